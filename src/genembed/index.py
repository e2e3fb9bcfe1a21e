"""Build a FAISS index (cosine similarity: L2-normalised vectors, inner product) over embedding
shards, with a Parquet id table and a manifest that fingerprints the model and settings."""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import polars as pl

from . import SCHEMA_VERSION, __version__
from .errors import GenembedError
from .io import atomic_path, write_json
from .store import check_consistent, iter_shards, read_attrs

log = logging.getLogger(__name__)
INDEX_FILE, TABLE_FILE, MANIFEST_FILE = "index.faiss", "windows.parquet", "manifest.json"
#: Shard attrs that every shard of one index must share, and that a query must match.
IDENTITY_KEYS = ("model_fingerprint", "tokenizer", "pooling", "layer", "strands", "window_size", "window_stride")


def normalise(x: np.ndarray) -> np.ndarray:
    """Float32 copy with unit-length rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


def _training_sample(shards: Sequence[str | os.PathLike], total: int, size: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    keep = min(1.0, size / max(total, 1))
    parts = [s.embeddings[rng.random(len(s.embeddings)) < keep] for s in iter_shards(shards)]
    return normalise(np.concatenate(parts))


def build_index(shards: Sequence[str | os.PathLike], windows: Sequence[str | os.PathLike], out_dir: str | os.PathLike,
                model: dict[str, Any], genomes: dict[str, str], factory: str = "Flat",
                train_size: int = 100_000, seed: int = 0) -> dict[str, Any]:
    """Index every shard's vectors under their window ids; write index, id table and manifest.

    ``windows`` are the shards' Parquet tables, in the same order as ``shards``; each shard's
    window ids must equal its table's (checked). ``genomes`` maps genome ids to prepared FASTA.
    """
    import faiss

    if len(shards) != len(windows):
        raise GenembedError("need one windows table per embedding shard")
    identity = check_consistent(list(shards), (*IDENTITY_KEYS, "precision"))
    if identity["model_fingerprint"] != model["fingerprint"]:
        raise GenembedError(f"{shards[0]}: embedded with another model than {model['source']}; re-embed")
    dim = int(read_attrs(shards[0])["dim"])
    try:
        index = faiss.index_factory(dim, factory, faiss.METRIC_INNER_PRODUCT)
    except RuntimeError as exc:
        raise GenembedError(f"index.factory {factory!r} is not a valid FAISS factory string ({str(exc).splitlines()[0]})") from None
    if not index.is_trained:
        total = sum(int(pl.scan_parquet(w).select(pl.len()).collect().item()) for w in windows)
        index.train(_training_sample(shards, total, train_size, seed))
    if not _takes_ids(index):
        index = faiss.IndexIDMap2(index)
    for shard, table in zip(iter_shards(shards), windows):
        expected = pl.read_parquet(table, columns=["window_id"])["window_id"].to_numpy()
        if not np.array_equal(expected, shard.window_id):
            raise GenembedError(f"{table}: window ids differ from those in the embedding shard")
        if len(shard.window_id):
            index.add_with_ids(normalise(shard.embeddings), shard.window_id)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / INDEX_FILE) as tmp:
        faiss.write_index(index, str(tmp))
    table = pl.concat([pl.scan_parquet(w) for w in windows])
    with atomic_path(out / TABLE_FILE) as tmp:
        table.select("window_id", "genome", "contig", "start", "end").sink_parquet(tmp)
    manifest = {
        "schema_version": SCHEMA_VERSION,
        "genembed_version": __version__,
        "faiss_version": faiss.__version__,
        "index": {"factory": factory, "metric": "cosine (inner product of L2-normalised vectors)",
                  "dim": dim, "count": int(index.ntotal)},
        "model": model,
        "settings": {k: (v.item() if hasattr(v, "item") else v) for k, v in identity.items()},
        "genomes": {g: str(Path(p).resolve()) for g, p in genomes.items()},
    }
    write_json(out / MANIFEST_FILE, manifest)
    log.info("indexed %d vectors of dimension %d (%s)", index.ntotal, dim, factory)
    return manifest


def _takes_ids(index) -> bool:
    """IVF indexes store ids themselves; others (Flat, HNSW, PQ) need an id map around them."""
    import faiss

    try:
        faiss.extract_index_ivf(index)
        return True
    except RuntimeError:
        return isinstance(index, faiss.IndexIDMap)


def read_manifest(index_dir: str | os.PathLike) -> dict[str, Any]:
    path = Path(index_dir) / MANIFEST_FILE
    if not path.is_file():
        raise GenembedError(f"{index_dir}: not a genembed index (no {MANIFEST_FILE})")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise GenembedError(f"{path}: invalid JSON ({exc})") from None
    if manifest.get("schema_version") != SCHEMA_VERSION:
        raise GenembedError(f"{path}: schema version {manifest.get('schema_version')} is not {SCHEMA_VERSION}")
    return manifest


def read_index(index_dir: str | os.PathLike):
    import faiss

    path = Path(index_dir) / INDEX_FILE
    if not path.is_file():
        raise GenembedError(f"{path}: index file not found")
    try:
        return faiss.read_index(str(path))
    except RuntimeError as exc:
        raise GenembedError(f"{path}: corrupt or unreadable FAISS index ({str(exc).splitlines()[0]})") from None
