"""Keeping a database and its store consistent.

orphans: which files rows (or a lake's snapshots, or released_files) reference;
remove: deleting a scan's rows; gc: deleting what nothing references any more; digests: per-scan content
digests recorded at ingest; consistency: checks that rows and files agree; report and
verify: what ``scandb verify`` finds and prints.
"""
