"""Files beside the catalog: the image store and the response matrices, one interface
(``base.Store``) and one garbage collector (``base.collect_garbage``)."""
