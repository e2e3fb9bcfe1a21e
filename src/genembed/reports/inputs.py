"""What the reports read: per genome its prepared FASTA, optional annotation, and the shards
(window tables + embeddings), streamed one shard at a time with annotation labels attached."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Iterator

import numpy as np
import polars as pl

from genembed.data.annotation import WindowLabeler, check_contigs, read_annotation, read_promoter_bed
from genembed.errors import GenembedError
from genembed.data.genome import read_fai
from genembed.data.io import read_table
from genembed.data.layout import GenomeInputs
from genembed.data.store import read_shard

if TYPE_CHECKING:
    from genembed.data.genome import Genome
    from genembed.reports.promoters import PromoterSettings


@dataclass
class ReportContext:
    """What the parts of a promoter report share: its genomes, the held-out interval of each contig of
    every labelled genome (``tests``), the genomes' open FASTAs, the settings, and the folder written."""

    genomes: list[GenomeInputs]
    tests: dict[str, dict[str, tuple[int, int]]]
    fastas: dict[str, "Genome"]
    settings: "PromoterSettings"
    out: Path


def make_labelers(genomes: list[GenomeInputs], upstream: int, downstream: int,
                  centre: int | None = None, operon_gap: int = 0) -> dict[str, WindowLabeler | None]:
    """A labeler per genome with an annotation or a promoter BED (both checked against the genome's
    contigs); with ``centre``, a window is a promoter when its central ``centre`` bp overlap a promoter;
    with ``operon_gap``, only operons' first genes have promoters (:func:`genembed.data.annotation.operon_heads`)."""
    out: dict[str, WindowLabeler | None] = {}
    for g in genomes:
        if not g.has_starts:
            out[g.name] = None
            continue
        contigs = genome_contigs(g.fasta)
        features = None
        if g.annotation is not None:
            features = read_annotation(g.annotation)
            check_contigs(features, contigs, g.annotation)
        bed = read_promoter_bed(g.promoters, contigs, upstream, downstream) if g.promoters is not None else None
        out[g.name] = WindowLabeler(features, contigs, upstream, downstream, promoters=bed, centre=centre,
                                    operon_gap=operon_gap)
    return out


def genome_contigs(fasta: Path) -> dict[str, int]:
    """Contig names and lengths of a prepared FASTA (from its .fai), in file order."""
    return dict(read_fai(f"{fasta}.fai"))


def iter_labeled(genomes: list[GenomeInputs], labelers: dict[str, WindowLabeler | None]
                 ) -> Iterator[tuple[GenomeInputs, pl.DataFrame, np.ndarray]]:
    """(genome, window table with ``promoter``/``annotation_class``, float32 embeddings) per shard."""
    for g in genomes:
        for table_path, shard_path in zip(g.windows, g.shards):
            table = read_table(table_path)
            if table.is_empty():  # every window of the shard fell to the N filter
                continue
            shard = read_shard(shard_path)
            if not np.array_equal(table["window_id"].to_numpy(), shard.window_id):
                raise GenembedError(f"{table_path}: window ids differ from those in {shard_path}")
            labeler = labelers.get(g.name)
            if labeler is None:
                table = table.with_columns(pl.lit(None, pl.Boolean).alias("promoter"),
                                           pl.lit("unannotated").alias("annotation_class"))
            else:
                table = labeler.label(table)
            yield g, table, shard.embeddings.astype(np.float32)
