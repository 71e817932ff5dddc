"""How to store a dynamic scan's responses: measured, all layouts in one run.

    .venv/bin/python -m bench.video_layout --trials 20 --neurons 8000 --frames 300

Layouts: a memory-mapped float32 ``.npy`` per scan, time-major ``(n, T, N)`` or in the
source layout ``(n, N, T)``; DuckDB with a row per (trial, neuron) holding ``FLOAT[]``
over frames; DuckDB with a row per trial holding a nested ``FLOAT[][]``. For each: bytes
on disk, seconds to write, and seconds for 32 random 50-frame windows of all neurons
(the training read), best of 3 (warm page cache: what a second epoch sees).
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

WORK = Path("bench/data/video_layout")


def best(fn, rounds=3):
    times = []
    for _ in range(rounds):
        t = time.perf_counter(); fn(); times.append(time.perf_counter() - t)
    return round(min(times), 4)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--neurons", type=int, default=8000)
    parser.add_argument("--frames", type=int, default=300)
    args = parser.parse_args(argv)
    n, N, T = args.trials, args.neurons, args.frames
    shutil.rmtree(WORK, ignore_errors=True)
    WORK.mkdir(parents=True)
    rng = np.random.default_rng(0)
    data = (rng.exponential(1.0, (n, N, T)) * (rng.random((n, N, T)) > 0.5)).astype(np.float32)
    windows = [(int(t), int(s)) for t, s in zip(rng.integers(0, n, 32), rng.integers(0, T - 50, 32))]
    out = {"shape": [n, N, T]}

    for name, array, cut in (("npy time-major (n, T, N)", data.transpose(0, 2, 1), lambda m, t, s: m[t, s:s + 50]),
                             ("npy source layout (n, N, T)", data, lambda m, t, s: m[t, :, s:s + 50])):
        path = WORK / f"{name.split()[1]}.npy"
        seconds = best(lambda: np.save(path, np.ascontiguousarray(array)), 1)
        matrix = np.load(path, mmap_mode="r")
        read = best(lambda: [np.array(cut(matrix, t, s)) for t, s in windows])
        out[name] = {"bytes": path.stat().st_size, "write_s": seconds, "windows_s": read}

    con = duckdb.connect(str(WORK / "rows.duckdb"))
    con.execute("CREATE TABLE r (trial INTEGER, neuron INTEGER, response FLOAT[])")
    flat = data.reshape(n * N, T)
    rows_table = pa.table({"trial": np.repeat(np.arange(n, dtype=np.int32), N),
                      "neuron": np.tile(np.arange(N, dtype=np.int32), n),
                      "response": pa.ListArray.from_arrays(pa.array(np.arange(0, n * N * T + 1, T, dtype=np.int32)),
                                                           pa.array(flat.ravel()))})
    t = time.perf_counter(); con.execute("INSERT INTO r SELECT * FROM rows_table"); con.execute("CHECKPOINT")
    write = time.perf_counter() - t

    def rows_windows():
        for trial, start in windows:
            con.execute("SELECT response[? + 1:? + 50] FROM r WHERE trial = ? ORDER BY neuron",
                        [start, start, trial]).to_arrow_reader(2048).read_all()
    out["duckdb row per (trial, neuron), FLOAT[] over frames"] = {
        "bytes": (WORK / "rows.duckdb").stat().st_size, "write_s": round(write, 2), "windows_s": best(rows_windows, 1)}
    con.close()

    con = duckdb.connect(str(WORK / "nested.duckdb"))
    con.execute("CREATE TABLE r (trial INTEGER, response FLOAT[][])")
    t = time.perf_counter()
    for trial in range(n):
        inner = pa.ListArray.from_arrays(pa.array(np.arange(0, N * T + 1, T, dtype=np.int32)), pa.array(data[trial].ravel()))
        outer = pa.ListArray.from_arrays(pa.array([0, N], pa.int32()), inner)
        batch = pa.table({"trial": pa.array([trial], pa.int32()), "response": outer})
        con.register("batch", batch); con.execute("INSERT INTO r SELECT * FROM batch"); con.unregister("batch")
    con.execute("CHECKPOINT")
    write = time.perf_counter() - t

    def nested_windows():
        for trial, start in windows:
            con.execute("SELECT list_transform(response, x -> x[? + 1:? + 50]) FROM r WHERE trial = ?",
                        [start, start, trial]).to_arrow_reader(16).read_all()
    out["duckdb row per trial, FLOAT[][]"] = {
        "bytes": (WORK / "nested.duckdb").stat().st_size, "write_s": round(write, 2), "windows_s": best(nested_windows, 1)}
    con.close()
    shutil.rmtree(WORK)
    print(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
