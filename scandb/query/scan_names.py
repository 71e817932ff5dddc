"""A scan named as users have it at hand: its key (``26872-17-20``), its folder name, or the
file it came from (``static26872-...-v1.zip``, with or without a path or ``.zip``)."""

from __future__ import annotations

from pathlib import PurePath

from ..errors import UsageError


def resolve_scan(conn, name: str) -> str:
    """The scan key ``name`` refers to; unknown or ambiguous is one line listing candidates."""
    rows = conn.execute("SELECT scan_key, name, source_name FROM scans ORDER BY scan_key").fetchall()
    if any(key == name for key, _, _ in rows):
        return name
    wanted = _bare(name)
    matches = [key for key, folder, source in rows if wanted in (_bare(folder), _bare(source or ""))]
    if len(matches) == 1:
        return matches[0]
    if matches:
        raise UsageError(f"scan name {name!r} is ambiguous: it names scans {', '.join(matches)}; pass a scan key")
    raise UsageError(f"no scan {name!r} in the database (it holds: "
                     f"{', '.join(key for key, _, _ in rows) or 'nothing'}; a scan key, folder or zip name)")


def _bare(name: str) -> str:
    """A file or folder name without its path, trailing slash and ``.zip``."""
    bare = PurePath(name.rstrip("/\\")).name
    return bare[:-4] if bare.lower().endswith(".zip") else bare
