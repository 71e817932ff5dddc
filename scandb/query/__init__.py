"""The query layer: selections, per-scan readers, normalisation."""
