"""Keeping a database and its store consistent.

orphans: files no row references; remove: deleting a scan; digests: per-scan content
digests recorded at ingest; consistency: checks that rows and files agree; report and
verify: what ``scandb verify`` finds and prints.
"""
