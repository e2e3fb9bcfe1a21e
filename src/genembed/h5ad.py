"""Embeddings as AnnData (``.h5ad``) for scanpy users: one row per window, ``obs`` holding the
window table (genome, contig, start, end, GC), ``X`` the embeddings, ``uns['genembed']`` the attrs."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from .errors import GenembedError
from .io import atomic_path
from .store import check_consistent, read_shard


def export_h5ad(windows: list[Path], shards: list[Path], out: str | os.PathLike) -> int:
    """Write the windows of these shards (all of one model and settings) to ``out``; returns rows."""
    try:
        import anndata
    except ImportError:
        raise GenembedError("AnnData export needs the anndata package (pip install anndata)") from None
    check_consistent(list(shards))
    tables, vectors, attrs = [], [], {}
    for table_path, shard_path in zip(windows, shards):
        table = pl.read_parquet(table_path)
        shard = read_shard(shard_path)
        if not np.array_equal(table["window_id"].to_numpy(), shard.window_id):
            raise GenembedError(f"{table_path}: window ids differ from those in {shard_path}")
        tables.append(table)
        vectors.append(shard.embeddings.astype(np.float32))
        attrs = attrs or shard.attrs
    import pandas as pd  # an anndata dependency

    table = pl.concat(tables)
    obs = pd.DataFrame({c: table[c].to_numpy() for c in table.columns},
                       index=pd.Index(table["window_id"].cast(pl.String).to_numpy(), name="window"))
    adata = anndata.AnnData(X=np.concatenate(vectors), obs=obs, uns={"genembed": attrs})
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
    return adata.n_obs
