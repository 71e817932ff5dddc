"""Sampling experanto sessions: scandb against the written-out reference of experanto's rules."""

from __future__ import annotations

import numpy as np
import pytest

from scandb.errors import UsageError
from scandb.session import open_session
from scandb.session.sampling import sample
from tests import experanto_reference as reference
from tests.experanto_sessions import VARIANTS, generated, make_session, spec_for


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    root = tmp_path_factory.mktemp("sessions")
    return {variant: make_session(root / variant, variant) for variant in VARIANTS
            if (root / variant).mkdir() or True}


def query_times(session, n=160, seed=0):
    """Random increasing times from before the earliest modality to after the latest, plus
    every modality's exact start and end (the closed interval's edges)."""
    starts = [m.start_time for m in session.modalities.values()]
    ends = [m.end_time for m in session.modalities.values()]
    rng = np.random.default_rng(seed)
    times = rng.uniform(min(starts) - 0.5, max(ends) + 0.5, n)
    return np.unique(np.concatenate([times, starts, ends]))


def assert_same(ours, theirs):
    values, valid = ours
    ref_values, ref_valid = theirs
    np.testing.assert_array_equal(valid, ref_valid)
    assert values.dtype == ref_values.dtype
    assert values.shape == ref_values.shape
    np.testing.assert_array_equal(values, ref_values)  # NaN == NaN here: bit for bit otherwise


@pytest.mark.parametrize("variant", list(VARIANTS))
@pytest.mark.parametrize("mode", ["nearest_neighbor", "linear"])
def test_sequences_match_experanto_bit_for_bit(folders, variant, mode):
    with open_session(folders[variant]) as session:
        times = query_times(session)
        names = [n for n, m in session.modalities.items() if m.kind == "sequence"]
        config = {n: {"interpolation": {"interpolation_mode": mode}} for n in names}
        ours = sample(session, times, names, config=config, return_valid=True, normalize=False)
        for name in names:
            assert_same(ours[name], reference.interpolate(folders[variant], name, times, interpolation_mode=mode))


def test_times_on_a_neurons_own_sample_edge_read_the_rows_experanto_reads(folders):
    """Times exactly one neuron's shift past a sample (t = start + k / rate + shift): where the
    rounded quotient lands on either side of a whole number decides the row, neuron by neuron."""
    root = folders["videos"]
    with open_session(root) as session:
        seq = session.modalities["responses"]
        rng = np.random.default_rng(11)
        low, high = seq.valid_interval
        k = rng.integers(int((low - seq.start_time) * seq.sampling_rate) + 1,
                         int((high - seq.start_time) * seq.sampling_rate) - 1, 300)
        shift = seq.phase_shifts[rng.integers(0, len(seq.phase_shifts), 300)]
        times = np.unique(seq.start_time + k / seq.sampling_rate + shift)
        times = times[(times >= low) & (times <= high)]
        ours = sample(session, times, ["responses"], return_valid=True, normalize=False)["responses"]
    assert_same(ours, reference.interpolate(root, "responses", times))


@pytest.mark.parametrize("variant", ["videos", "images", "stimuli_names", "colour", "data_key"])
@pytest.mark.parametrize("rescale", [True, False])
def test_screen_frames_match_experanto_bit_for_bit(folders, variant, rescale):
    interpolation = {"rescale": rescale, "rescale_size": [36, 48] if rescale else None}
    with open_session(folders[variant]) as session:
        times = query_times(session, n=60)
        ours = sample(session, times, ["screen"], config={"screen": {"interpolation": interpolation}},
                      return_valid=True, normalize=False)["screen"]
    assert_same(ours, reference.interpolate(folders[variant], "screen", times, **interpolation))


def test_screen_default_config_rescales_to_144_by_256_with_inter_area(folders):
    with open_session(folders["videos"]) as session:
        times = query_times(session, n=12)
        values, valid = sample(session, times, ["screen"], return_valid=True, normalize=False)["screen"]
    assert values.shape == (len(valid), 144, 256)
    assert_same((values, valid), reference.interpolate(folders["videos"], "screen", times, rescale=True,
                                                       rescale_size=[144, 256]))


def dense_screen_times(session, seconds: float) -> np.ndarray:
    """Times at 120 Hz over the screen's first seconds (and just before it): each 30 Hz frame
    is shown at several of them."""
    start, end = session.modalities["screen"].valid_interval
    return np.arange(start - 0.05, min(end, start + seconds), 1 / 120)


@pytest.mark.parametrize("variant", ["videos", "colour"])
@pytest.mark.parametrize("rescale_size", [[36, 64], [54, 32], [18, 96], [144, 256], [36, 48], [12, 16]])
def test_enlarging_by_whole_factors_gives_inter_areas_floats(folders, variant, rescale_size):
    """Whole-factor enlargements (the native frames are 18 x 32) take a path of their own in
    scandb; the reference rescales every frame with cv2's INTER_AREA."""
    interpolation = {"rescale": True, "rescale_size": rescale_size}
    with open_session(folders[variant]) as session:
        times = dense_screen_times(session, 3)
        ours = sample(session, times, ["screen"], config={"screen": {"interpolation": interpolation}},
                      return_valid=True, normalize=False)["screen"]
    raw, valid = reference.interpolate(folders[variant], "screen", times, **interpolation)
    assert len(valid) > 3 * 30 * 2  # most frames shown more than once
    assert_same(ours, (raw, valid))


@pytest.mark.parametrize("variant, rescale_size", [("videos", [36, 64]), ("colour", [54, 32])])
def test_normalising_frames_enlarged_by_whole_factors(folders, variant, rescale_size):
    """One mean and std for every pixel: scandb normalises the native frame, then enlarges it."""
    interpolation = {"rescale": True, "rescale_size": rescale_size}
    with open_session(folders[variant]) as session:
        times = dense_screen_times(session, 1)
        ours = sample(session, times, ["screen"], config={"screen": {"interpolation": interpolation}},
                      return_valid=True)["screen"]
    raw, valid = reference.interpolate(folders[variant], "screen", times, **interpolation)
    assert_same(ours, (reference.normalize(folders[variant], "screen", raw, "normalize"), valid))


@pytest.mark.parametrize("dtype", ["uint16", "float32"])
def test_frames_other_than_uint8_enlarged_and_normalised(tmp_path, dtype):
    """uint8 frames are normalised through a table of their 256 values; pixels of another
    dtype (here the same videos scaled, so values differ from any table's) take the frames'
    own arithmetic, and both give experanto's floats."""
    root = make_session(tmp_path, "videos")
    for path in sorted((root / "screen" / "data").glob("*.npy")):
        pixels = np.load(path)
        np.save(path, (pixels.astype(dtype) * 3 + (0.25 if dtype == "float32" else 1)).astype(dtype))
    interpolation = {"rescale": True, "rescale_size": [36, 64]}
    with open_session(root) as session:
        times = dense_screen_times(session, 1)
        ours = sample(session, times, ["screen"], config={"screen": {"interpolation": interpolation}},
                      return_valid=True)["screen"]
    raw, valid = reference.interpolate(root, "screen", times, **interpolation)
    assert np.abs(raw).max() > 255
    assert_same(ours, (reference.normalize(root, "screen", raw, "normalize"), valid))


def test_a_per_column_screen_normalisation_applies_after_enlarging(folders):
    """A mean and std per output column cannot be applied to the native frame: each column
    gets its own values, as (x - mean) / std broadcasts them over the enlarged frame."""
    width = 64
    mode = {"means": np.linspace(-3, 3, width).tolist(), "stds": np.linspace(0.5, 2.5, width).tolist()}
    config = {"screen": {"interpolation": {"rescale": True, "rescale_size": [36, width]},
                         "transforms": {"normalization": mode}}}
    with open_session(folders["videos"]) as session:
        times = dense_screen_times(session, 0.5)
        ours = sample(session, times, ["screen"], config=config, return_valid=True)["screen"]
    raw, valid = reference.interpolate(folders["videos"], "screen", times, rescale=True, rescale_size=[36, width])
    assert_same(ours, (reference.normalize(folders["videos"], "screen", raw, mode), valid))


def test_intervals_and_spikes_match_experanto(folders):
    root = folders["tiers_and_spikes"]
    with open_session(root) as session:
        times = query_times(session, n=200)
        ours = sample(session, times, ["tiers", "spikes"], return_valid=True)
    assert_same(ours["tiers"], reference.interpolate(root, "tiers", times))
    assert ours["tiers"][0].any(axis=0).all()  # each tier is hit by some time
    for align in ("center", "left", "right"):
        with open_session(root) as session:
            mine = sample(session, times, ["spikes"], return_valid=True,
                          config={"spikes": {"interpolation": {"interpolation_align": align,
                                                               "interpolation_window": 0.25}}})["spikes"]
        assert_same(mine, reference.interpolate(root, "spikes", times, interpolation_align=align,
                                                interpolation_window=0.25))


@pytest.mark.parametrize("variant", ["videos", "images", "float64_responses", "no_meta_json"])
def test_default_normalisation_matches_chunkdataset(folders, variant):
    root = folders[variant]
    with open_session(root) as session:
        times = query_times(session, n=40)
        ours = sample(session, times, ["responses", "eye_tracker", "treadmill"], return_valid=True)
        screen_times = times[::8]
        screen = sample(session, screen_times, ["screen"], return_valid=True,
                        config={"screen": {"interpolation": {"rescale_size": [12, 16]}}})["screen"]
    for name, mode in (("responses", "normalize_variance_only"), ("eye_tracker", "normalize"),
                       ("treadmill", "normalize")):
        raw, valid = reference.interpolate(root, name, times)
        assert_same(ours[name], (reference.normalize(root, name, raw, mode), valid))
    raw, valid = reference.interpolate(root, "screen", screen_times, rescale=True, rescale_size=[12, 16])
    assert_same(screen, (reference.normalize(root, "screen", raw, "normalize"), valid))


def test_a_silent_neuron_is_divided_by_the_raised_std_not_by_zero(folders):
    """Neuron 0 never responds (std 0): ChunkDataset raises its std to 1 % of the mean std."""
    root = folders["videos"]
    stds = generated(spec_for("videos")).arrays["responses/meta/stds.npy"]
    assert stds[0, 0] == 0
    with open_session(root) as session:
        times = query_times(session, n=30)
        values = sample(session, times, ["responses"])["responses"]
        raw = sample(session, times, ["responses"], normalize=False)["responses"]
    assert np.all(np.isfinite(values[:, 0]))
    threshold = np.float32(0.01) * np.nanmean(stds)
    np.testing.assert_allclose(values[:, 1:], raw[:, 1:] / stds[:, 1:], rtol=1e-6)
    assert threshold > 0


def test_config_dict_mode_overrides_the_statistics(folders):
    root = folders["videos"]
    with open_session(root) as session:
        times = query_times(session, n=10)
        config = {"eye_tracker": {"transforms": {"normalization": {"means": [1, 2, 3, 4], "stds": [2, 2, 2, 2]}}}}
        values = sample(session, times, ["eye_tracker"], config=config)["eye_tracker"]
        raw = sample(session, times, ["eye_tracker"], normalize=False)["eye_tracker"]
    np.testing.assert_array_equal(values, (raw - np.float32([1, 2, 3, 4])) / np.float32(2))


def test_previous_sample_not_nearest(folders):
    """Default mode holds the previous sample: 0.9 of a step after row 5 is still row 5."""
    root = folders["no_meta_json"]  # no phase shifts
    spec = spec_for("no_meta_json")
    data = generated(spec).arrays["treadmill/data.npy"]
    with open_session(root) as session:
        tread = session.modalities["treadmill"]
        t = tread.start_time + 5.9 / tread.sampling_rate
        values = sample(session, [t], ["treadmill"], normalize=False)["treadmill"]
        linear = sample(session, [t], ["treadmill"], normalize=False,
                        config={"treadmill": {"interpolation": {"interpolation_mode": "linear"}}})["treadmill"]
    assert values[0, 0] == data[5, 0]
    np.testing.assert_allclose(linear[0, 0], 0.1 * data[5, 0] + 0.9 * data[6, 0], rtol=1e-6)


def test_phase_shifts_read_each_neuron_at_its_own_time(folders):
    root = folders["videos"]
    arrays = generated(spec_for("videos")).arrays
    data, shifts = arrays["responses/data.mem"], arrays["responses/meta/phase_shifts.npy"]
    with open_session(root) as session:
        responses = session.modalities["responses"]
        t = responses.start_time + 40.5 / responses.sampling_rate
        values = sample(session, [t], ["responses"], normalize=False)["responses"][0]
        start = responses.start_time
        rate = responses.sampling_rate
    rows = np.floor((t - shifts - start) * rate).astype(int)
    assert len(set(rows)) == 2  # the shifts (up to one step) split the neurons between two rows
    np.testing.assert_array_equal(values, data[rows, np.arange(len(shifts))])


def test_times_outside_a_modality_are_dropped_and_reported_by_index(folders):
    with open_session(folders["videos"]) as session:
        screen = session.screen
        times = np.array([screen.start_time - 1.0, screen.start_time, screen.end_time, screen.end_time + 1.0])
        result = sample(session, times, ["screen", "responses"], return_valid=True, normalize=False)
    assert list(result["screen"][1]) == [1, 2]
    assert len(result["screen"][0]) == 2
    assert list(result["responses"][1]) == [1, 2]  # responses start earlier, end later, but not 1 s


def test_a_tar_samples_the_same_as_its_folder(folders, tmp_path):
    tar = make_session(tmp_path, "videos", tar=True)
    with open_session(folders["videos"]) as a, open_session(tar) as b:
        times = query_times(a, n=50)
        ours_a, ours_b = sample(a, times, return_valid=True), sample(b, times, return_valid=True)
    assert ours_a.keys() == ours_b.keys() == {"screen", "responses", "eye_tracker", "treadmill"}
    for name in ours_a:
        assert_same(ours_a[name], ours_b[name])


def test_default_modalities_skip_what_a_session_lacks(folders):
    with open_session(folders["no_optional_modalities"]) as session:
        assert set(sample(session, query_times(session, n=5))) == {"screen", "responses"}
        with pytest.raises(UsageError, match="no modality 'eye_tracker'"):
            sample(session, [0.0], ["eye_tracker"])


def test_screen_needs_strictly_increasing_times(folders):
    with open_session(folders["videos"]) as session:
        t = session.screen.start_time + 1
        with pytest.raises(UsageError, match="strictly increasing"):
            sample(session, [t + 0.5, t], ["screen"])


@pytest.mark.parametrize("widest", [0.09, 0.45])
def test_phase_shifts_within_a_sample_and_wider_give_each_neurons_previous_sample(widest):
    """Shifts within one sample period take the bisection path, wider ones the per-value gather;
    both give data[floor((t - shift - start) / dt), neuron], in experanto's steps."""
    from scandb.session.modalities import Sequence
    from scandb.session.sampling import sample_sequence

    rng = np.random.default_rng(3)
    data = rng.normal(size=(200, 9)).astype(np.float32)
    shifts = rng.uniform(0, widest, 9)
    seq = Sequence("responses", "sequence", {}, 100.0, 100.0 + 199 / 10, 10.0, data, shifts)
    times = np.unique(np.concatenate([rng.uniform(*seq.valid_interval, 300), seq.valid_interval]))
    got, valid = sample_sequence(seq, times)
    rows = np.floor((times[valid][:, None] - shifts[None, :] - 100.0) / (1.0 / 10.0)).astype(int)
    np.testing.assert_array_equal(got, data[rows, np.arange(9)[None, :]])
    assert len(valid) == len(times)
