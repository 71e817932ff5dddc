"""scandb: Sensorium-style recording scans in one DuckDB database."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("scandb")
except PackageNotFoundError:  # running from a source tree that is not installed
    __version__ = "0.0.0+unknown"
