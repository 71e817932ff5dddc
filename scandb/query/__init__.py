"""The query layer, data flowing one way: ``selection`` (anything naming trials -> a checked
Arrow table) -> ``fetch`` (aligned arrays, scan by scan, from each scan's ``reader``), with
``neurons`` and ``normalize`` applied per scan; ``filters`` and ``summary`` serve ``ScanDB``'s
table helpers."""
