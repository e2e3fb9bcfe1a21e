"""Embeddings as AnnData (``.h5ad``) for scanpy users: one row per window, ``obs`` holding the
window table (genome, contig, start, end, GC), ``X`` the embeddings, ``uns['genembed']`` the attrs,
``uns['sequence_vectors']`` each genome's genome and contig vectors (:mod:`genembed.reports.compare`)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.io import atomic_path, read_table
from genembed.data.store import check_consistent, iter_shards, read_attrs


def export_h5ad(windows: list[Path], shards: list[Path], out: str | os.PathLike) -> int:
    """Write the windows of these shards (all of one model and settings) to ``out``; returns rows.
    ``X`` (float32) is written shard by shard into the file, so memory holds one shard and the
    window table, not the matrix (a human genome's is 12.7 GB at d = 256)."""
    try:
        import anndata
    except ImportError:
        raise GenembedError("AnnData export needs the anndata package (pip install anndata)") from None
    import h5py
    import pandas as pd  # an anndata dependency

    check_consistent(list(shards))
    attrs = read_attrs(shards[0])
    table = pl.concat([read_table(w) for w in windows])
    obs = pd.DataFrame({c: table[c].to_numpy() for c in table.columns},
                       index=pd.Index(table["window_id"].cast(pl.String).to_numpy(), name="window"))
    dim = int(attrs["dim"])
    adata = anndata.AnnData(obs=obs, var=pd.DataFrame(index=[str(i) for i in range(dim)]), uns={"genembed": attrs})
    from anndata.io import write_elem

    from genembed.data.vectors import AGGREGATE, VectorSums

    sums: dict[str, VectorSums] = {}  # each genome's genome and contig vectors, made in the pass that writes X
    with atomic_path(out) as tmp:
        adata.write_h5ad(tmp)
        with h5py.File(tmp, "r+") as f:
            x = f.create_dataset("X", shape=(len(obs), dim), dtype=np.float32, chunks=(min(max(len(obs), 1), 4096), dim))
            x.attrs.update({"encoding-type": "array", "encoding-version": "0.2.0"})
            row = 0
            for table_path, shard in zip(windows, iter_shards(shards)):
                ids = table["window_id"][row : row + len(shard.window_id)].to_numpy()
                if len(shard.window_id) != len(ids) or not np.array_equal(ids, shard.window_id):
                    raise GenembedError(f"{table_path}: window ids differ from those in its embedding shard")
                x[row : row + len(ids)] = shard.embeddings.astype(np.float32)
                part = table.slice(row, len(ids))
                for genome in part["genome"].unique(maintain_order=True):
                    mine = (part["genome"] == genome).to_numpy()
                    sums.setdefault(genome, VectorSums()).add(part["contig"].to_numpy()[mine], shard.embeddings[mine])
                row += len(ids)
            if row != len(obs):
                raise GenembedError(f"{out}: {len(obs)} windows in the tables but {row} in the shards")
            vectors = {g: s.vectors(g) for g, s in sums.items()}
            write_elem(f, "uns/sequence_vectors", {g: {
                "genome_vector": v.vector, "contigs": np.array(v.contigs["contig"].to_list(), dtype=object),
                "contig_vectors": v.contig_vectors, "contig_windows": v.contigs["windows"].to_numpy(),
                "aggregate": AGGREGATE} for g, v in vectors.items()})
    return len(obs)

