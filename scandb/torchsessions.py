"""PyTorch training on experanto sessions: what experanto's ``ChunkDataset`` yields, one
dataset per session, and a loader that interleaves sessions as its ``FastSessionDataLoader``
does, resumable mid-epoch (``pip install scandb[torch]``).

    from scandb.torchdata import SessionDataset, SessionLoader
    train = SessionDataset.per_session("lab.duckdb", "SELECT scan_key FROM scans WHERE kind = 'experanto'")
    loader = SessionLoader(train, batch_size=8, seed=0, num_workers=2)
    for session_key, batch in loader:
        ...
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import torch.utils.data

from .catalog import DEFAULT_WAIT
from .errors import UsageError
from .query.sessions import StoredFiles, session_of, stored_files
from .session import chunks
from .session.session import Session


class SessionDataset(torch.utils.data.Dataset):
    """One stored experanto session's chunks, as ``ChunkDataset(session, **default config)``
    yields them: item ``i`` is the chunk at ``starts[i]``, a dict of tensors ``screen``
    ``(C, T, H, W)`` float32 (default ``(1, 60, 144, 256)``), ``responses`` ``(16, N)``,
    ``eye_tracker`` ``(60, 4)``, ``treadmill`` ``(60, 1)``, and ``timestamps`` (modality to
    float32 ``(T,)`` seconds after the responses' ``start_time``).

    ``starts`` are every chunk start ChunkDataset keeps for the tier (``scandb.session.chunks``):
    2 s chunks lying wholly in trials of ``tier`` or blanks (``include_blanks``) and away from
    NaN rows. ``valid_condition`` replaces ``{tier: tier}`` with experanto's own condition (a
    dict or a list of dicts on ``modality``, ``valid_trial``, ``tier``). ``config`` takes
    experanto's modality-config keys (``sampling_rate``, ``chunk_size``, ``offset``,
    ``interpolation``, ``transforms.normalization``, ``filters``), merged over the default;
    ``modalities`` picks the modalities of an item (ChunkDataset needs a folder for each of
    its config's, so a session without an eye tracker or treadmill is refused unless they are
    left out here).

    Train chunks come in random order from random starts: ``sampler()`` (which ``SessionLoader``
    uses) draws each epoch ``len(starts) // sample_stride`` of the valid starts at random, as
    ChunkDataset's ``shuffle_valid_screen_times`` does, in random order, from its seed and the
    epoch; at the default stride of 1 that is every start, shuffled. Other tiers give every
    ``sample_stride``-th start in time order. Indexing the dataset is deterministic: the same
    index is the same chunk in every process.

    It never holds the database: the session's small files and the places of its arrays in
    the store are read when it is made (waiting up to ``wait`` s for a writer), and items are
    read from the store's files only. It is picklable and each ``DataLoader`` worker opens the
    session from those files itself. Sessions with different neuron counts make different
    datasets: ``per_session`` makes one per session, ``SessionLoader`` trains on them together.
    On a lake, ``snapshot=N`` reads the lake as it was then (``dataset.snapshot`` says which).
    """

    def __init__(self, db_path: str | Path, session: str, tier: str | None = "train", *,
                 config: Mapping | None = None, modalities: Sequence[str] | None = None,
                 valid_condition=None, include_blanks: bool = True, sample_stride: int = 1,
                 safe_interval_threshold: float = chunks.SAFE_INTERVAL_THRESHOLD,
                 normalize_timestamps: bool = True, wait: float = DEFAULT_WAIT, snapshot: int | None = None):
        from .query.scan_names import resolve_scan
        from .torchdata import open_pinned

        if not isinstance(sample_stride, int) or isinstance(sample_stride, bool) or sample_stride < 1:
            raise UsageError(f"sample_stride {sample_stride!r} must be a positive integer")
        self.db_path = str(db_path)
        self.tier = tier
        self.config = _plain(config)
        self.sample_stride = sample_stride
        self.normalize_timestamps = normalize_timestamps
        screen = (self.config or {}).get("screen") or {}
        if valid_condition is None and "valid_condition" in screen:
            valid_condition = screen["valid_condition"]
        include_blanks = screen.get("include_blanks", include_blanks)
        self.condition = chunks.conditions(tier, valid_condition, include_blanks)
        self.train = (tier == "train") if valid_condition is None else any(
            c.get("tier") == "train" for c in self.condition)
        self.full_config, self.modalities = chunks.chunk_settings(self.config, modalities)
        with open_pinned(self.db_path, wait, snapshot) as db, db.database.lease():
            self.snapshot = db.database.snapshot
            self.key = resolve_scan(db.conn, session)
            self._files: StoredFiles = stored_files(db.database, self.key)
        filters = {name: settings["filters"] for name, settings in (self.config or {}).items()
                   if isinstance(settings, Mapping) and "filters" in settings}
        filters = {**{n: chunks.DEFAULT_FILTERS[n] for n in self.modalities if n in chunks.DEFAULT_FILTERS},
                   **filters}
        session_ = self.session
        if valid_condition is None and tier is not None:
            tiers = sorted({t.tier for t in session_.trials})
            if tier not in tiers:
                raise UsageError(f"session {self.key} has no trials of tier {tier!r} (its tiers: {', '.join(tiers)})")
        self.starts = chunks.valid_chunk_starts(
            session_, self.config, self.modalities, valid_condition=self.condition, include_blanks=False,
            filters=filters, safe_interval_threshold=safe_interval_threshold)
        self.n_neurons = session_.modalities["responses"].n_signals
        if len(self.starts):
            self[0]  # statistics, shapes, stimulus files: any problem a batch could meet shows now

    @classmethod
    def per_session(cls, db_path: str | Path, sessions="SELECT scan_key FROM scans WHERE kind = 'experanto' "
                                                       "ORDER BY scan_key", tier: str | None = "train",
                    params: Sequence | None = None, **options) -> dict[str, "SessionDataset"]:
        """One dataset per session, by session key: ``sessions`` is SQL whose first column is
        scan keys (every stored session by default) or a list of keys or names. ``options``
        are the constructor's; every dataset reads the same snapshot."""
        from .torchdata import open_pinned

        with open_pinned(db_path, options.get("wait", DEFAULT_WAIT), options.get("snapshot")) as db:
            options["snapshot"] = db.database.snapshot
            if isinstance(sessions, str):
                keys = [row[0] for row in db.sql(sessions, params=params).fetchall()]
            else:
                keys = list(sessions)
        keys = list(dict.fromkeys(keys))
        if not keys:
            raise UsageError("the selection names no session (SELECT scan_key FROM scans WHERE kind = 'experanto')")
        datasets = {}
        for key in keys:
            dataset = cls(db_path, key, tier, **options)
            datasets[dataset.key] = dataset
        return datasets

    @property
    def session(self) -> Session:
        """The session opened from the store's files (once per process)."""
        if getattr(self, "_session", None) is None:
            self._session = session_of(self._files)
        return self._session

    def __getstate__(self) -> dict:
        state = dict(self.__dict__)
        state.pop("_session", None)
        state.pop("_helper", None)
        return state

    def __len__(self) -> int:
        return len(self.starts)

    def __getitem__(self, index: int) -> dict:
        index = int(index)
        if not -len(self.starts) <= index < len(self.starts):
            raise IndexError(f"chunk {index} of {len(self.starts)} in session {self.key}")
        return _tensors(self.chunk(float(self.starts[index])))

    def chunk(self, start: float) -> dict:
        """The chunk at any start time, as numpy arrays."""
        return chunks.chunk(self.session, start, normalize_timestamps=self.normalize_timestamps,
                            settings=(self.full_config, self.modalities), beside=self._beside())

    def _beside(self):
        """A thread of this process that samples the sequences while the screen's frames are
        made; None in a ``DataLoader`` worker (the workers are the parallelism there)."""
        if torch.utils.data.get_worker_info() is not None:
            return None
        helper = getattr(self, "_helper", None)
        if helper is None or helper[0] != os.getpid():  # a forked copy's executor has no thread
            helper = self._helper = (os.getpid(), ThreadPoolExecutor(1, thread_name_prefix="scandb-chunk"))
        return helper[1]

    def epoch_indexes(self, seed: int | None = 0, epoch: int = 0) -> np.ndarray:
        """The indexes an epoch visits: train, a random ``len // sample_stride`` of them in random
        order (from ``seed`` and ``epoch``); other tiers every ``sample_stride``-th in order."""
        n = len(self.starts)
        if not self.train:
            return np.arange(0, n, self.sample_stride, dtype=np.int64)
        rng = np.random.default_rng(None if seed is None else [seed, epoch])
        picked = rng.choice(n, size=n // self.sample_stride, replace=False) if self.sample_stride > 1 else np.arange(n)
        return rng.permutation(picked).astype(np.int64)

    def sampler(self, seed: int | None = 0) -> "ChunkSampler":
        return ChunkSampler(self, seed)


class ChunkSampler(torch.utils.data.Sampler):
    """A dataset's indexes for each epoch (``SessionDataset.epoch_indexes``); the epoch advances
    after each full pass, and ``state_dict`` / ``load_state_dict`` resume one mid-epoch.

    Its position counts the indexes handed out, and a ``DataLoader`` takes indexes ahead of
    the batches it has yielded (its workers' prefetch): to resume exactly at the next batch,
    use ``SessionLoader`` (one session or several), whose state counts batches yielded."""

    def __init__(self, dataset: SessionDataset, seed: int | None = 0):
        self.dataset, self.seed = dataset, seed
        self.epoch, self.position = 0, 0

    def __len__(self) -> int:
        return len(self.dataset.epoch_indexes(self.seed, self.epoch))

    def __iter__(self):
        indexes = self.dataset.epoch_indexes(self.seed, self.epoch)
        while self.position < len(indexes):
            self.position += 1
            yield int(indexes[self.position - 1])
        self.epoch, self.position = self.epoch + 1, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.position = int(epoch), 0

    def state_dict(self) -> dict:
        return {"seed": self.seed, "epoch": self.epoch, "position": self.position}

    def load_state_dict(self, state: Mapping) -> None:
        self.seed, self.epoch, self.position = state["seed"], int(state["epoch"]), int(state["position"])


class SessionLoader:
    """Batches from several sessions' datasets, interleaved as experanto's
    ``FastSessionDataLoader`` interleaves them: in each round every session that has batches
    left gives one (in an order shuffled per round with ``shuffle``), so every session is seen
    once before any repeats; each batch comes from one session; the epoch ends when every
    session has given all its batches. Iterating yields ``(session_key, batch)``, the batch
    collated by torch's ``default_collate`` (a dict of stacked tensors).

    Each session's chunks per epoch are its dataset's ``epoch_indexes`` (train: random, from
    ``seed``, the epoch and the session's place). The whole epoch's plan is fixed when it
    starts, so ``state_dict()`` after any batch and ``load_state_dict`` on a new loader (same
    datasets, same options) yield exactly the remaining batches of that epoch, then the next
    epochs as the first loader would have. One ``DataLoader`` with ``num_workers`` workers
    reads every session's batches in the plan's order; ``dataloader_options`` go to it.
    """

    def __init__(self, datasets: Mapping[str, SessionDataset], batch_size: int = 1, *, seed: int | None = 0,
                 shuffle: bool = True, drop_last: bool = False, num_workers: int = 0, **dataloader_options):
        if not datasets:
            raise UsageError("SessionLoader needs at least one session's dataset")
        if dataloader_options.get("persistent_workers"):
            raise UsageError("SessionLoader starts its workers each epoch; persistent_workers is not supported")
        for option in ("batch_size", "sampler", "batch_sampler", "shuffle", "collate_fn"):
            dataloader_options.pop(option, None)
        self.datasets = dict(datasets)
        self.keys = list(self.datasets)
        self.batch_size, self.seed, self.shuffle, self.drop_last = int(batch_size), seed, shuffle, drop_last
        self.num_workers, self.options = num_workers, dataloader_options
        self._all = _Concatenated([self.datasets[k] for k in self.keys])
        self.epoch, self.position = 0, 0

    def _session_batches(self, number: int) -> list[list[int]]:
        dataset = self.datasets[self.keys[number]]
        seed = None if self.seed is None else self.seed + number + 1
        indexes = dataset.epoch_indexes(seed, self.epoch)
        batches = [indexes[i:i + self.batch_size].tolist() for i in range(0, len(indexes), self.batch_size)]
        if self.drop_last and batches and len(batches[-1]) < self.batch_size:
            batches.pop()
        return batches

    def plan(self, epoch: int | None = None) -> list[tuple[int, list[int]]]:
        """The epoch's batches in order: (session number, the session's chunk indexes)."""
        saved = self.epoch
        if epoch is not None:
            self.epoch = epoch
        try:
            pending = {n: self._session_batches(n) for n in range(len(self.keys))}
            rng = np.random.default_rng(None if self.seed is None else [self.seed, self.epoch])
        finally:
            self.epoch = saved
        out = []
        while any(pending.values()):
            order = list(range(len(self.keys)))
            if self.shuffle:
                order = rng.permutation(order).tolist()
            for number in order:
                if pending[number]:
                    out.append((number, pending[number].pop(0)))
        return out

    def __len__(self) -> int:
        return len(self.plan())

    def __iter__(self):
        plan = self.plan()
        remaining = plan[self.position:]
        if remaining:
            offsets = self._all.offsets
            batches = [[offsets[n] + i for i in batch] for n, batch in remaining]
            loader = torch.utils.data.DataLoader(self._all, batch_sampler=batches, num_workers=self.num_workers,
                                                 **self.options)
            for (number, _), batch in zip(remaining, loader):
                self.position += 1
                yield self.keys[number], batch
        self.epoch, self.position = self.epoch + 1, 0

    def state_dict(self) -> dict:
        """Where training stands: the epoch and how many of its batches were yielded."""
        return {"epoch": self.epoch, "position": self.position, "seed": self.seed, "sessions": list(self.keys)}

    def load_state_dict(self, state: Mapping) -> None:
        if list(state["sessions"]) != self.keys:
            raise UsageError("the saved state is of a loader over other sessions "
                             f"({', '.join(state['sessions'])}); make the loader with the same datasets")
        self.epoch, self.position, self.seed = int(state["epoch"]), int(state["position"]), state["seed"]


class _Concatenated(torch.utils.data.Dataset):
    """Several sessions' datasets one after another (the loader's global indexes)."""

    def __init__(self, datasets: list[SessionDataset]):
        self.datasets = datasets
        self.offsets = np.concatenate([[0], np.cumsum([len(d) for d in datasets])]).astype(np.int64).tolist()

    def __len__(self) -> int:
        return self.offsets[-1]

    def __getitem__(self, index: int) -> dict:
        number = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.datasets[number][index - self.offsets[number]]


def _tensors(item: dict) -> dict:
    out = {name: torch.from_numpy(np.ascontiguousarray(values)) for name, values in item.items()
           if name != "timestamps"}
    out["timestamps"] = {name: torch.from_numpy(np.ascontiguousarray(t)) for name, t in item["timestamps"].items()}
    return out


def _plain(config: Mapping | None) -> dict | None:
    """A user's config as plain dicts and lists (an OmegaConf DictConfig too)."""
    if config is None:
        return None
    if isinstance(config, Mapping):
        return {str(k): _plain(v) if isinstance(v, Mapping) else (list(v) if isinstance(v, (list, tuple)) or
                                                                   type(v).__name__ == "ListConfig" else v)
                for k, v in config.items()}
    raise UsageError(f"config {config!r}: experanto's modality config, a dict of modality -> settings")
