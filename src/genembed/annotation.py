"""GFF3/GTF annotation: parse features, derive promoter regions upstream of gene starts
(strand-aware), and measure how much of each window overlaps a set of intervals."""

from __future__ import annotations

import os
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from .errors import GenembedError
from .io import open_text

FEATURE_SCHEMA = {"contig": pl.String, "type": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String}
CLASSES = ("upstream", "CDS", "intergenic")
_GENE_TYPES = ("gene",)
_TRANSCRIPT_TYPES = ("transcript", "mRNA")


def read_annotation(path: str | os.PathLike) -> pl.DataFrame:
    """Features of a GFF3 or GTF file (plain or gzip) with 0-based half-open coordinates."""
    path = Path(path)
    if not path.is_file():
        raise GenembedError(f"{path}: annotation file not found")
    try:
        return _parse(path)
    except (EOFError, OSError, zlib.error) as exc:
        raise GenembedError(f"{path}: cannot read annotation ({exc}); is it truncated?") from None
    except UnicodeDecodeError:
        raise GenembedError(f"{path}: not a text GFF/GTF file (undecodable bytes)") from None


def _parse(path: Path) -> pl.DataFrame:
    cols: dict[str, list] = {k: [] for k in FEATURE_SCHEMA}
    with open_text(path) as fh:
        for lineno, raw in enumerate(fh, 1):
            if raw.startswith(b"##FASTA"):
                break
            if raw.startswith(b"#") or not raw.strip():
                continue
            f = raw.rstrip(b"\r\n").split(b"\t")
            if len(f) != 9:
                raise GenembedError(f"{path}: line {lineno}: expected 9 tab-separated GFF/GTF columns, found {len(f)}")
            try:
                start, end = int(f[3]) - 1, int(f[4])
            except ValueError:
                raise GenembedError(f"{path}: line {lineno}: start/end are not integers") from None
            if start < 0 or end <= start:
                raise GenembedError(f"{path}: line {lineno}: invalid coordinates {f[3].decode()}-{f[4].decode()}")
            cols["contig"].append(f[0].decode())
            cols["type"].append(f[2].decode())
            cols["start"].append(start)
            cols["end"].append(end)
            cols["strand"].append(f[6].decode())
    return pl.DataFrame(cols, schema=FEATURE_SCHEMA)


def check_contigs(features: pl.DataFrame, contigs: dict[str, int], path: str | os.PathLike) -> None:
    """Refuse annotation naming unknown contigs or running past a contig's end."""
    for contig, end in features.group_by("contig").agg(pl.col("end").max()).iter_rows():
        if contig not in contigs:
            raise GenembedError(f"{path}: contig '{contig}' is not in the genome FASTA")
        if end > contigs[contig]:
            raise GenembedError(f"{path}: features on '{contig}' end at {end}, past its length {contigs[contig]}")


def gene_starts(features: pl.DataFrame) -> pl.DataFrame:
    """Gene starts (``gene`` features; transcripts where a file has no genes): contig, tss, strand.

    ``tss`` is the first transcribed base: ``start`` on the + strand, ``end - 1`` on the - strand.
    """
    genes = features.filter(pl.col("type").is_in(_GENE_TYPES))
    if genes.is_empty():
        genes = features.filter(pl.col("type").is_in(_TRANSCRIPT_TYPES))
    return genes.filter(pl.col("strand").is_in(["+", "-"])).select(
        "contig",
        pl.when(pl.col("strand") == "+").then(pl.col("start")).otherwise(pl.col("end") - 1).alias("tss"),
        "strand",
    ).unique(maintain_order=True)


def promoter_regions(features: pl.DataFrame, upstream: int, downstream: int,
                     contigs: dict[str, int]) -> pl.DataFrame:
    """Regions from ``upstream`` bp before to ``downstream`` bp after each gene start, strand-aware."""
    starts = gene_starts(features)
    plus = pl.col("strand") == "+"
    regions = starts.select(
        "contig",
        pl.when(plus).then(pl.col("tss") - upstream).otherwise(pl.col("tss") + 1 - downstream).alias("start"),
        pl.when(plus).then(pl.col("tss") + downstream).otherwise(pl.col("tss") + 1 + upstream).alias("end"),
    )
    lengths = pl.DataFrame({"contig": list(contigs), "length": list(contigs.values())})
    return (regions.join(lengths, on="contig")
            .with_columns(pl.col("start").clip(lower_bound=0), pl.min_horizontal("end", "length").alias("end"))
            .filter(pl.col("end") > pl.col("start")).select("contig", "start", "end"))


class Coverage:
    """Merged intervals per contig; answers 'how many bp of [start, end) are covered' vectorised."""

    def __init__(self, intervals: pl.DataFrame):
        self._by_contig: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}
        for (contig,), part in intervals.sort("contig", "start").group_by(["contig"], maintain_order=True):
            s, e = _merge(part["start"].to_numpy(), part["end"].to_numpy())
            self._by_contig[contig] = (s, e, np.concatenate([[0], np.cumsum(e - s)]))

    def _covered_below(self, contig: str, x: np.ndarray) -> np.ndarray:
        s, e, csum = self._by_contig[contig]
        i = np.searchsorted(s, x, side="right")  # intervals starting at or before x
        prev = np.maximum(i - 1, 0)
        partial = np.where(i > 0, np.clip(x - s[prev], 0, e[prev] - s[prev]), 0)
        return csum[prev] * (i > 0) + partial

    def overlap(self, contigs: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """Covered bp of each [start, end)."""
        out = np.zeros(len(starts), dtype=np.int64)
        for contig in np.unique(contigs):
            if contig not in self._by_contig:
                continue
            rows = contigs == contig
            out[rows] = self._covered_below(contig, ends[rows]) - self._covered_below(contig, starts[rows])
        return out


def _merge(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], np.maximum.accumulate(ends[order])
    new = np.concatenate([[True], starts[1:] > ends[:-1]])
    group = np.cumsum(new) - 1
    merged_end = np.zeros(group[-1] + 1 if len(group) else 0, dtype=np.int64)
    np.maximum.at(merged_end, group, ends)
    return starts[new], merged_end


class WindowLabeler:
    """Annotation classes and promoter labels for windows of one genome."""

    def __init__(self, features: pl.DataFrame, contigs: dict[str, int], upstream: int, downstream: int):
        promoters = promoter_regions(features, upstream, downstream, contigs)
        cds = features.filter(pl.col("type") == "CDS").select("contig", "start", "end")
        self.promoters, self.cds = Coverage(promoters), Coverage(cds)
        self.annotated = Coverage(pl.concat([promoters, cds]))

    def label(self, windows: pl.DataFrame) -> pl.DataFrame:
        """``promoter``: the window overlaps an upstream region by at least 1 bp.
        ``annotation_class``: whichever of upstream, CDS and intergenic covers most of the window
        (ties go to upstream, then CDS)."""
        contigs = windows["contig"].to_numpy()
        starts, ends = windows["start"].to_numpy(), windows["end"].to_numpy()
        up = self.promoters.overlap(contigs, starts, ends)
        cds = self.cds.overlap(contigs, starts, ends)
        rest = (ends - starts) - self.annotated.overlap(contigs, starts, ends)
        cls = np.where((up >= cds) & (up >= rest) & (up > 0), "upstream", np.where(cds >= rest, "CDS", "intergenic"))
        return windows.with_columns(pl.Series("promoter", up > 0), pl.Series("annotation_class", cls))
