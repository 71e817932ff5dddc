"""Models next to the data: predictions stored as a model's run, scored as Sensorium scores them.

``metrics`` computes the scores (numpy only), ``predictions`` checks and aligns what a user
hands over, ``writer`` stores a run in one transaction, ``files`` reads and writes the
files people exchange (an ``.npz``, the Sensorium 2023 submission Parquet), ``leaderboard``
summarises scores.
"""
