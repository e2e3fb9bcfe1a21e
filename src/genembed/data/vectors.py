"""Genome and contig vectors: a genome's (or contig's) window vectors, each made unit length, averaged;
summed in the same pass that reads the shards for another purpose (:class:`VectorSums`), stored in
a genome's stitched HDF5 file and read back."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import polars as pl

from genembed.errors import GenembedError


def normalise(x: np.ndarray) -> np.ndarray:
    """Float32 copy with unit-length rows (zero rows stay zero)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.maximum(norms, 1e-12)


@dataclass
class SequenceVectors:
    """A genome's vector and its contigs' (the mean unit window vector of each), with window counts."""

    genome: str
    vector: np.ndarray  # [d] float32
    contigs: pl.DataFrame  # contig, windows
    contig_vectors: np.ndarray  # [contigs, d] float32


class VectorSums:
    """Running float64 sums of unit window vectors per contig: a genome's vectors made in the pass that
    reads its shards anyway (:func:`window_set_vectors`, the index's add jobs)."""

    def __init__(self) -> None:
        self.sums: dict[str, np.ndarray] = {}
        self.counts: dict[str, int] = {}

    def add(self, contigs: np.ndarray, embeddings: np.ndarray) -> None:
        """One shard's windows: their contigs and (raw) vectors, in the same order."""
        x = normalise(embeddings)
        for c in dict.fromkeys(contigs):
            rows = contigs == c
            self.sums[c] = self.sums.get(c, 0) + x[rows].sum(0, dtype=np.float64)
            self.counts[c] = self.counts.get(c, 0) + int(rows.sum())

    def vectors(self, name: str) -> SequenceVectors:
        if not self.sums:
            raise GenembedError(f"{name}: no embedded windows to make a genome vector from")
        names = list(self.sums)
        contig_vectors = np.stack([self.sums[c] / self.counts[c] for c in names]).astype(np.float32)
        vector = (sum(self.sums.values()) / sum(self.counts.values())).astype(np.float32)
        return SequenceVectors(name, vector, pl.DataFrame({"contig": names, "windows": [self.counts[c] for c in names]}),
                               contig_vectors)


AGGREGATE = "mean of the unit-normalised window vectors"  # how genome and contig vectors are made, as files say


def write_sequence_group(group, v: SequenceVectors) -> None:
    """A genome's vectors into an HDF5 group: ``genome_vector`` [d], ``contig_vectors`` [contigs, d],
    ``contigs`` and ``contig_windows``, the aggregation in its attrs."""
    import h5py

    group.create_dataset("genome_vector", data=v.vector.astype(np.float32))
    group.create_dataset("contig_vectors", data=v.contig_vectors.astype(np.float32))
    group.create_dataset("contigs", data=np.array(v.contigs["contig"].to_list(), dtype=object), dtype=h5py.string_dtype())
    group.create_dataset("contig_windows", data=v.contigs["windows"].to_numpy().astype(np.int64))
    group.attrs.update({"aggregate": AGGREGATE, "genome": v.genome, "windows": int(v.contigs["windows"].sum())})


def read_sequence_group(group) -> SequenceVectors:
    """What :func:`write_sequence_group` wrote."""
    contigs = [c.decode() if isinstance(c, bytes) else str(c) for c in group["contigs"][:]]
    return SequenceVectors(str(group.attrs["genome"]), group["genome_vector"][:],
                           pl.DataFrame({"contig": contigs, "windows": group["contig_windows"][:]}), group["contig_vectors"][:])


def mean_vector(unit: np.ndarray) -> np.ndarray:
    """The mean of unit window vectors (float64 sums), as :func:`sequence_vectors` makes a contig's."""
    return (unit.sum(0, dtype=np.float64) / max(len(unit), 1)).astype(np.float32)


