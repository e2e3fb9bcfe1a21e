"""Whole-sequence vectors (issue 32, first part): one vector per contig and one per genome, the mean
of its window vectors (each unit-normalised first, as the index compares them), a genome-by-genome
cosine distance matrix and an average-linkage (UPGMA) tree in Newick. A genome's vectors come from
its own shards only, so adding a genome leaves every other genome's vectors as they were."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import polars as pl

from .errors import GenembedError
from .index import normalise
from .io import atomic_path, read_table
from .layout import GenomeInputs
from .store import read_shard


@dataclass
class SequenceVectors:
    """A genome's vector and its contigs' (the mean unit window vector of each), with window counts."""

    genome: str
    vector: np.ndarray  # [d] float32
    contigs: pl.DataFrame  # contig, windows
    contig_vectors: np.ndarray  # [contigs, d] float32


def sequence_vectors(genome: GenomeInputs) -> SequenceVectors:
    """The mean of the unit-normalised window vectors of each contig and of the whole genome, read
    shard by shard (memory: one shard)."""
    sums: dict[str, np.ndarray] = {}
    counts: dict[str, int] = {}
    for windows, shard in zip(genome.windows, genome.shards):
        table = read_table(windows, ["window_id", "contig"])
        s = read_shard(shard)
        if not np.array_equal(table["window_id"].to_numpy(), s.window_id):
            raise GenembedError(f"{windows}: window ids differ from those in {shard}")
        x = normalise(s.embeddings)
        contigs = table["contig"].to_numpy()
        for c in dict.fromkeys(contigs):
            rows = contigs == c
            sums[c] = sums.get(c, 0) + x[rows].sum(0, dtype=np.float64)
            counts[c] = counts.get(c, 0) + int(rows.sum())
    if not sums:
        raise GenembedError(f"{genome.name}: no embedded windows to make a genome vector from")
    names = list(sums)
    contig_vectors = np.stack([sums[c] / counts[c] for c in names]).astype(np.float32)
    vector = (sum(sums.values()) / sum(counts.values())).astype(np.float32)
    return SequenceVectors(genome.name, vector, pl.DataFrame({"contig": names, "windows": [counts[c] for c in names]}),
                           contig_vectors)


def distances(vectors: Sequence[SequenceVectors]) -> np.ndarray:
    """Cosine distance (1 - cosine similarity) between every two genome vectors."""
    x = normalise(np.stack([v.vector for v in vectors])).astype(np.float64)
    d = np.clip(1 - x @ x.T, 0, 2)
    np.fill_diagonal(d, 0)
    return (d + d.T) / 2


def upgma_newick(names: Sequence[str], d: np.ndarray) -> str:
    """The average-linkage (UPGMA) tree of a distance matrix (scipy), in Newick with branch lengths."""
    from scipy.cluster.hierarchy import linkage, to_tree
    from scipy.spatial.distance import squareform

    if len(names) == 1:
        return f"{_label(names[0])};"
    root = to_tree(linkage(squareform(d, checks=False), method="average"))

    def walk(node, parent_height: float) -> str:
        length = max(parent_height - node.dist / 2, 0.0)  # UPGMA: a node's height is half its merge distance
        if node.is_leaf():
            return f"{_label(names[node.id])}:{length:.6g}"
        return f"({walk(node.left, node.dist / 2)},{walk(node.right, node.dist / 2)}):{length:.6g}"

    return walk(root, root.dist / 2).rsplit(":", 1)[0] + ";"


def _label(name: str) -> str:
    return "'" + name.replace("'", "''") + "'" if any(ch in name for ch in " ,;:()[]'") else name


def compare_genomes(genomes: Sequence[GenomeInputs], out: str | Path) -> pl.DataFrame:
    """``genembed compare``: ``distances.tsv`` and ``distances.parquet`` (genome by genome, cosine
    distance of the genome vectors) and ``tree.nwk`` (UPGMA) in ``out``; returns the distance table."""
    if len(genomes) < 2:
        raise GenembedError("genembed compare: needs at least two embedded genomes")
    vectors = [sequence_vectors(g) for g in genomes]
    names = [v.genome for v in vectors]
    d = distances(vectors)
    table = pl.DataFrame({"genome": names, **{n: d[:, i] for i, n in enumerate(names)}})
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_path(out / "distances.tsv") as tmp:
        table.write_csv(tmp, separator="\t", float_precision=6)
    with atomic_path(out / "distances.parquet") as tmp:
        table.write_parquet(tmp)
    with atomic_path(out / "tree.nwk") as tmp:
        Path(tmp).write_text(upgma_newick(names, d) + "\n")
    return table
