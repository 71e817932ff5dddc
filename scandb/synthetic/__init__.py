"""Synthetic Sensorium-style scans: ``scandb example``'s data, and every layout for the tests.

One module per job: ``model`` the stimulus/response model (natural images, Gabor
receptive fields, image-driven responses), ``static`` and ``dynamic`` the scans a spec
describes, ``files`` a scan as files in the Sensorium layout (zip or folder), ``example``
what ``scandb example`` writes. The test fixtures (tests/scans.py) and the full-size
benchmark scans (bench/generate.py) build on these names, re-exported here.
"""

from .dynamic import (
    DYNAMIC_TIERS,
    ORACLE_REPEATS,
    VideoSpec,
    dynamic_tiers,
    generate_dynamic,
)
from .example import (
    dynamic_example_specs,
    example_specs,
    experanto_example_specs,
    write_dynamic_example,
    write_example,
    write_experanto_example,
)
from .files import GeneratedScan, write_folder, write_zip
from .model import gabor_fields, image_driven_responses, natural_images
from .static import (
    AREAS,
    LAYERS,
    TEST_REPEATS,
    ResponseModel,
    ScanSpec,
    generate,
    shared_test_image,
)

__all__ = [
    "AREAS", "DYNAMIC_TIERS", "LAYERS", "ORACLE_REPEATS", "TEST_REPEATS", "GeneratedScan", "ResponseModel",
    "ScanSpec", "VideoSpec", "dynamic_example_specs", "dynamic_tiers", "example_specs", "gabor_fields",
    "generate", "generate_dynamic", "image_driven_responses", "natural_images", "shared_test_image",
    "write_dynamic_example", "write_example", "write_folder", "write_zip", "experanto_example_specs",
    "write_experanto_example",
]
