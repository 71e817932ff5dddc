"""The ``responses_long`` view, each definition written once, by the revision that made it.

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
}


def create_responses_long(revision: str) -> str:
    """The statement that (re)defines ``responses_long`` as of ``revision``."""
    return f"CREATE OR REPLACE VIEW responses_long AS {RESPONSES_LONG[revision]}"
