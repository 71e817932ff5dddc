"""Full-size synthetic scans for the benchmarks, written as real-looking zips.

Shapes follow the seven Sensorium 2022 scans (5,950-7,000 trials, 7,334-8,372 neurons,
uint8 images of (1, 144, 256), 100 test images shown ten times and shared by all scans);
data is generated with ``ScanSpec(realistic=True)`` so it deflates about like real data.
Scans are written by two processes at once and reused when already on disk.
"""

from __future__ import annotations

import argparse
import zipfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from scandb.synthetic import ScanSpec, generate, write_zip

FULL_SIZE = (
    # animal, session, scan, trials, neurons: ids of the real scans, sizes within their range
    (26872, 17, 20, 6000, 8000),
    (27204, 5, 13, 5994, 7776),
    (21067, 10, 18, 6736, 8372),
    (22846, 10, 16, 7000, 7344),
    (23343, 5, 17, 5950, 7334),
    (23656, 14, 22, 6455, 8107),
    (23964, 4, 22, 6210, 7928),
)
FULL_IMAGE_SHAPE = (1, 144, 256)
TINY_IMAGE_SHAPE = (1, 36, 64)


def scan_specs(count: int, tiny: bool = False) -> list[ScanSpec]:
    """The specs of the first ``count`` benchmark scans (tiny: same layout, toy sizes)."""
    if not 1 <= count <= len(FULL_SIZE):
        raise ValueError(f"between 1 and {len(FULL_SIZE)} scans, not {count}")
    specs = []
    for seed, (animal, session, scan_idx, trials, neurons) in enumerate(FULL_SIZE[:count]):
        spec = ScanSpec(animal_id=animal, session=session, scan_idx=scan_idx, seed=seed, realistic=True,
                        n_trials=trials, n_neurons=neurons, image_shape=FULL_IMAGE_SHAPE, n_test_images=100)
        if tiny:
            spec = spec.with_(n_trials=60 + 5 * seed, n_neurons=50 + seed, image_shape=TINY_IMAGE_SHAPE,
                              n_test_images=2)
        specs.append(spec)
    return specs


def zip_path(directory: Path, spec: ScanSpec) -> Path:
    return directory / f"{spec.name}.zip"


def _write_one(spec: ScanSpec, path: Path) -> Path:
    partial = path.with_suffix(".partial")
    write_zip(generate(spec), partial)
    partial.replace(path)
    return path


def write_scans(directory: Path, count: int, tiny: bool = False, workers: int = 2) -> list[Path]:
    """The benchmark zips in ``directory``, generating those not there yet."""
    directory.mkdir(parents=True, exist_ok=True)
    specs = scan_specs(count, tiny)
    paths = [zip_path(directory, spec) for spec in specs]
    missing = [(s, p) for s, p in zip(specs, paths) if not _is_complete(p)]
    if missing and (workers <= 1 or len(missing) == 1):
        for spec, path in missing:
            _write_one(spec, path)
    elif missing:
        with ProcessPoolExecutor(workers) as pool:
            list(pool.map(_write_one, *zip(*missing)))
    return paths


def _is_complete(path: Path) -> bool:
    if not path.exists():
        return False
    try:
        with zipfile.ZipFile(path):
            return True
    except zipfile.BadZipFile:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scans", type=int, default=7)
    parser.add_argument("--out", type=Path, default=Path("bench/data"))
    parser.add_argument("--tiny", action="store_true", help="toy sizes (for the tests)")
    args = parser.parse_args()
    for path in write_scans(args.out / "zips", args.scans, args.tiny):
        print(path, f"{path.stat().st_size / 1e6:.0f} MB")


if __name__ == "__main__":
    main()
