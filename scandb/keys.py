"""Names shared by reading, storing and querying scans, defined once for the package."""

DATA_KEYS = ("images", "responses", "behavior", "pupil_center")
"""The per-trial arrays of a static scan, as folders under data/ and as fetch keys."""

VIDEO_DATA_KEYS = ("videos", "responses", "behavior", "pupil_center")
"""The per-trial arrays of a dynamic (video) scan: each (..., T), time last, NaN after the
trial's end."""

STIMULUS_KEY = {"static": "images", "dynamic": "videos"}
"""The stimulus key of each kind of scan; both are stored in the image store."""

TEST_TIER_MARK = "test"
"""Tiers whose name contains this (test, final_test, live_test_main, ...) hold competition
test trials, whose released responses may be zero-filled."""

BEHAVIOR_COLUMNS = ("pupil_dilation", "pupil_dilation_derivative", "running_speed")
"""The three behavior values of a trial, in the order of data/behavior/<i>.npy."""

PUPIL_COLUMNS = ("pupil_x", "pupil_y")
"""The two pupil-centre values of a trial, in the order of data/pupil_center/<i>.npy."""

ARROW_BATCH = 2048
"""Rows per Arrow batch when DuckDB exports query results (a default batch of wide lists
can try to allocate tens of GiB on DuckDB 1.5)."""
