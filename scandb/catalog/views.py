"""The ``responses_long`` and ``trials_full`` views, each definition written once, by the
revision that made it.

Migrations create the definition of their own revision (and their downgrades restore the
one before), so old revisions keep doing exactly what they did; the newest entry is the
view a database at the head revision has.
"""

from __future__ import annotations

RESPONSES_LONG = {
    # One list index per (trial, neuron): over a minute per full-size scan.
    "0002": """
        SELECT r.scan_key, r.trial_id, n.neuron_idx, n.unit_id, n.area, n.layer, t.tier, t.image_id,
               r.response[n.neuron_idx + 1] AS response
        FROM responses r
        JOIN trials t USING (scan_key, trial_id)
        JOIN neurons n USING (scan_key)
    """,
    # unnest + join on neuron_idx; image_id still from trials, so a filter on it reads
    # every scan's responses.
    "0003": """
        SELECT r.scan_key, r.trial_id, n.neuron_idx, n.unit_id, n.area, n.layer, t.tier, t.image_id, r.response
        FROM (SELECT scan_key, trial_id, unnest(response) AS response,
                     generate_subscripts(response, 1) - 1 AS neuron_idx
              FROM responses) r
        JOIN trials t USING (scan_key, trial_id)
        JOIN neurons n USING (scan_key, neuron_idx)
    """,
    # image_id from responses: DuckDB pushes a filter on it into the responses scan (checked
    # with EXPLAIN on 1.5.6), whose rows ingest stores sorted by image, so zone maps skip
    # every other image's row groups.
    "0005": """
        SELECT r.scan_key, r.trial_id, n.neuron_idx, n.unit_id, n.area, n.layer, t.tier, r.image_id, r.response
        FROM (SELECT scan_key, trial_id, image_id, unnest(response) AS response,
                     generate_subscripts(response, 1) - 1 AS neuron_idx
              FROM responses) r
        JOIN trials t USING (scan_key, trial_id)
        JOIN neurons n USING (scan_key, neuron_idx)
    """,
    # With the trial's withheld flags, so averages can skip the zeros a competition release
    # put in place of withheld test responses (WHERE NOT responses_withheld).
    "0010": """
        SELECT r.scan_key, r.trial_id, n.neuron_idx, n.unit_id, n.area, n.layer, t.tier, r.image_id, r.response,
               t.responses_withheld, t.behavior_withheld
        FROM (SELECT scan_key, trial_id, image_id, unnest(response) AS response,
                     generate_subscripts(response, 1) - 1 AS neuron_idx
              FROM responses) r
        JOIN trials t USING (scan_key, trial_id)
        JOIN neurons n USING (scan_key, neuron_idx)
    """,
}


def create_responses_long(revision: str) -> str:
    """The statement that (re)defines ``responses_long`` as of ``revision``."""
    return f"CREATE OR REPLACE VIEW responses_long AS {RESPONSES_LONG[revision]}"


TRIALS_FULL = {
    # trials with behavior, pupil position and the image's path and shape.
    "0002": """
        SELECT t.scan_key, t.trial_id, t.tier, t.image_id, t.image_class, t.trial_idx, t.trial_hash,
               t."timestamp", b.pupil_dilation, b.pupil_dilation_derivative, b.running_speed,
               b.pupil_x, b.pupil_y, t.image_hash, i.path AS image_path, i.shape AS image_shape,
               i.dtype AS image_dtype, t.extra
        FROM trials t
        JOIN behavior b USING (scan_key, trial_id)
        JOIN images i USING (image_hash)
    """,
    # Keeps trials without a behavior row (dynamic ones) and shows the dynamic columns.
    "0006": """
        SELECT t.scan_key, t.trial_id, t.tier, t.image_id, t.image_class, t.trial_idx, t.trial_hash,
               t."timestamp", b.pupil_dilation, b.pupil_dilation_derivative, b.running_speed,
               b.pupil_x, b.pupil_y, t.image_hash, i.path AS image_path, i.shape AS image_shape,
               i.dtype AS image_dtype, t.extra, t.n_frames, t.responses_withheld, t.behavior_withheld
        FROM trials t
        LEFT JOIN behavior b USING (scan_key, trial_id)
        JOIN images i USING (image_hash)
    """,
    # With experanto sessions' stimulus columns (NULL for scans' trials).
    "0014": """
        SELECT t.scan_key, t.trial_id, t.tier, t.image_id, t.image_class, t.trial_idx, t.trial_hash,
               t."timestamp", b.pupil_dilation, b.pupil_dilation_derivative, b.running_speed,
               b.pupil_x, b.pupil_y, t.image_hash, i.path AS image_path, i.shape AS image_shape,
               i.dtype AS image_dtype, t.extra, t.n_frames, t.responses_withheld, t.behavior_withheld,
               st.stimulus_name, st.stimulus_kind, st.stimulus_type, st.first_frame, st.onset_time, st.end_time,
               st.valid_trial, st.stimulus_file, st.trial_key
        FROM trials t
        LEFT JOIN behavior b USING (scan_key, trial_id)
        LEFT JOIN stimulus_trials st USING (scan_key, trial_id)
        JOIN images i USING (image_hash)
    """,
    # With where a packed image's .npy file is inside the object image_path names (a store
    # on a bucket packs images, store/packs.py): NULL when image_path is the image's own file.
    "0016": """
        SELECT t.scan_key, t.trial_id, t.tier, t.image_id, t.image_class, t.trial_idx, t.trial_hash,
               t."timestamp", b.pupil_dilation, b.pupil_dilation_derivative, b.running_speed,
               b.pupil_x, b.pupil_y, t.image_hash, i.path AS image_path, i.shape AS image_shape,
               i.dtype AS image_dtype, t.extra, t.n_frames, t.responses_withheld, t.behavior_withheld,
               st.stimulus_name, st.stimulus_kind, st.stimulus_type, st.first_frame, st.onset_time, st.end_time,
               st.valid_trial, st.stimulus_file, st.trial_key,
               i.pack_offset AS image_pack_offset, i.pack_length AS image_pack_length
        FROM trials t
        LEFT JOIN behavior b USING (scan_key, trial_id)
        LEFT JOIN stimulus_trials st USING (scan_key, trial_id)
        JOIN images i USING (image_hash)
    """,
}


def create_trials_full(revision: str) -> str:
    """The statement that (re)defines ``trials_full`` as of ``revision``."""
    return f"CREATE OR REPLACE VIEW trials_full AS {TRIALS_FULL[revision]}"


CREATE_SCAN_IMAGES = """
        CREATE VIEW scan_images AS
        SELECT DISTINCT t.scan_key, t.image_id, i.image_hash, i.path, i.shape, i.dtype
        FROM trials t JOIN images i USING (image_hash)
    """
"""Unchanged since revision 0002."""
CREATE_RESPONSE_AT = "CREATE MACRO response_at(response, neuron_idx) AS response[neuron_idx + 1]"
"""Unchanged since revision 0002."""


def at_head() -> list[str]:
    """The statements that make every view and macro of a database at the head revision
    (in the order revision 0002 made them)."""
    return [create_trials_full(max(TRIALS_FULL)), CREATE_SCAN_IMAGES, CREATE_RESPONSE_AT,
            create_responses_long(max(RESPONSES_LONG))]
