"""Files beside the catalog: the image store and the response matrices."""
