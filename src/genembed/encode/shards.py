"""Shards of windows to vectors: each shard's token rows read (the next one while the model runs),
embedded in one pass along each run of overlapping windows where the model allows it
(:mod:`genembed.encode.scan`), else window by window (:mod:`genembed.encode.embed`), and written as
an HDF5 shard (:mod:`genembed.data.store`), with one model load for all of them."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence

import numpy as np

from genembed.data.io import read_table
from genembed.data.layout import ShardFiles
from genembed.data.store import write_shard
from genembed.encode.device import is_out_of_memory
from genembed.encode.embed import Embedder, embed_tokens, split_rows
from genembed.encode.scan import shard_vectors
from genembed.encode.tokenize import read_tokens
from genembed.errors import GenembedError

log = logging.getLogger(__name__)


def _load(files: ShardFiles, strands: str) -> tuple[Any, list[np.ndarray]]:
    table = read_table(files.windows, ["window_id", "contig", "start"])
    flat, offsets = read_tokens(files.tokens, files.offsets)
    expected = table.height * (2 if strands == "average" else 1)
    if len(offsets) - 1 != expected:
        raise GenembedError(f"{files.tokens}: {len(offsets) - 1} token rows but {table.height} windows in"
                            f" {files.windows} (strands: {strands} needs {expected})")
    return table, split_rows(np.array(flat), offsets)


def in_one_pass(label: str, run_pass: Callable[[], np.ndarray | None], by_window: Callable[[], np.ndarray]
                ) -> np.ndarray:
    """The vectors of a pass along the sequence (``run_pass``; None where no pass applies), else window
    by window (``by_window``). The one out-of-memory fallback above the model's batches: a GPU
    out-of-memory error in the pass (its rows are long) goes window by window, where the model's
    batches back off on their own (:class:`genembed.encode.embed.Embedder` halves its token budget)."""
    try:
        vectors = run_pass()
    except RuntimeError as exc:
        if not is_out_of_memory(exc):
            raise
        log.warning("%s: out of memory in the pass along the sequence; embedding window by window", label)
        vectors = None
    return by_window() if vectors is None else vectors


def embed_windows(embedder: Embedder, rows: Sequence[np.ndarray], table: Any, label: str = "windows") -> np.ndarray:
    """Float16 embeddings of a shard's windows (token ``rows``, and the ``table`` with their contigs
    and starts): through one pass along each run of overlapping windows where the model's states are
    local (:func:`genembed.encode.scan.shard_vectors`: the same vectors, less work), else window by window."""
    def run_pass() -> np.ndarray | None:
        start = time.perf_counter()
        vectors = shard_vectors(embedder, rows, table["contig"].to_numpy(), table["start"].to_numpy())
        if vectors is not None:
            seconds = time.perf_counter() - start
            log.info("%s: %d windows in %.1f s (%.1f windows/s, one pass along the sequence)", label, len(vectors),
                     seconds, len(vectors) / max(seconds, 1e-9))
        return vectors

    return in_one_pass(label, run_pass, lambda: embed_tokens(embedder, rows, label))


def embed_shards(shards: Sequence[ShardFiles], embedder: Embedder, attrs: dict[str, Any],
                 prepare: Callable[[ShardFiles], Any] | None = None,
                 vectors_of: Callable[[ShardFiles, Any, Sequence[np.ndarray]], np.ndarray] | None = None) -> int:
    """Stage: embed shards one after another with one model load. The next shard is prepared
    (``prepare`` makes its inputs, if given) and read, and the previous shard's HDF5 file written,
    in background threads while the model runs. Each shard is written atomically: a killed job
    leaves whole shards or none. ``vectors_of(files, table, rows)`` replaces :func:`embed_windows`."""

    def load(files: ShardFiles):
        if prepare:
            prepare(files)
        return _load(files, embedder.settings.strands)

    total = 0
    with ThreadPoolExecutor(1) as reader, ThreadPoolExecutor(1) as writer:
        pending = reader.submit(load, shards[0]) if shards else None
        writes = []
        for i, files in enumerate(shards):
            table, rows = pending.result()
            if i + 1 < len(shards):
                pending = reader.submit(load, shards[i + 1])
            vectors = vectors_of(files, table, rows) if vectors_of else embed_windows(embedder, rows, table,
                                                                                       files.out.name)
            writes.append(writer.submit(write_shard, files.out, vectors, table["window_id"].to_numpy(), attrs))
            total += table.height
        for w in writes:
            w.result()
    return total
