"""Genome-browser tracks of window scores: bedGraph, bigWig and thresholded BED, sorted the way
UCSC and IGV expect (contigs by name, then start) with the genome's contig sizes."""

from __future__ import annotations

from pathlib import Path

import polars as pl

from genembed.data.io import atomic_path


def score_bins(windows: pl.DataFrame, stride: int) -> pl.DataFrame:
    """Each window's score on its central ``stride``-wide bin (windows overlap, bins do not):
    contig, start, end, score; sorted by contig name, then start."""
    width = pl.min_horizontal(pl.col("end") - pl.col("start"), pl.lit(stride))
    start = pl.col("start") + (pl.col("end") - pl.col("start") - width) // 2
    return (windows.select("contig", start.alias("start"), (start + width).alias("end"), pl.col("score").cast(pl.Float32))
            .sort("contig", "start"))


def write_bedgraph(bins: pl.DataFrame, path: Path, name: str, description: str) -> None:
    header = (f'track type=bedGraph name="{name}" description="{description}" visibility=full '
              f"autoScale=off viewLimits=0:1 windowingFunction=mean\n")
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(header)
            bins.select("contig", "start", "end", pl.col("score").round(4)).write_csv(fh, separator="\t", include_header=False)


def write_bigwig(bins: pl.DataFrame, contigs: dict[str, int], path: Path) -> None:
    """A bigWig with every contig of the genome in its header (sizes from the FASTA index)."""
    import pyBigWig

    with atomic_path(path) as tmp:
        bw = pyBigWig.open(str(tmp), "w")
        try:
            bw.addHeader(sorted(contigs.items()), maxZooms=10)
            if bins.height:  # entries in header order: contigs by name, then start
                bw.addEntries(bins["contig"].to_list(), bins["start"].to_list(), ends=bins["end"].to_list(),
                              values=bins["score"].cast(pl.Float64).to_list())
        finally:
            bw.close()


def write_predictions(windows: pl.DataFrame, threshold: float, path: Path, name: str, description: str) -> int:
    """Windows scoring at least ``threshold``, merged where they touch or overlap, as BED6 (score =
    the best probability x 1000). Returns the number of regions."""
    hits = windows.filter(pl.col("score") >= threshold).sort("contig", "start")
    regions = (hits.with_columns((pl.col("start") > pl.col("end").cum_max().shift(1).over("contig")).fill_null(True)
                                 .cum_sum().alias("region"))
               .group_by("region", maintain_order=True)
               .agg(pl.col("contig").first(), pl.col("start").min(), pl.col("end").max(), pl.col("score").max()))
    bed = regions.select("contig", "start", "end", pl.format("promoter_{}", pl.int_range(1, pl.len() + 1)).alias("name"),
                         (pl.col("score") * 1000).round().cast(pl.Int32).alias("score"), pl.lit(".").alias("strand"))
    header = f'track name="{name}" description="{description}" useScore=1\n'
    with atomic_path(path) as tmp:
        with open(tmp, "w") as fh:
            fh.write(header)
            bed.write_csv(fh, separator="\t", include_header=False)
    return bed.height
