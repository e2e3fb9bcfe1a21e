"""Query results as files: TSV, JSON, BED, Parquet, and for loci PAF (minimap2's format) and BLAST
tabular (``-outfmt 6``, "m8"), written batch by batch and atomically."""

from __future__ import annotations

import json
import os
import sys
from typing import IO, Iterable, Iterator

import polars as pl

from genembed.errors import GenembedError
from genembed.data.io import atomic_path, check_input, open_text

FORMATS = ("tsv", "json", "bed", "paf", "m8", "parquet")
LOCUS_ONLY = ("paf", "m8")


def iter_fasta_queries(path: str | os.PathLike) -> Iterator[tuple[str, bytes]]:
    """(name, upper-case sequence) of each record of a query FASTA (plain or gzip), one at a time."""
    check_input(path, "query FASTA")
    with open_text(path) as fh:
        yield from fasta_records(fh, str(path))


def fasta_records(lines: Iterable[bytes], source: str) -> Iterator[tuple[str, bytes]]:
    """FASTA records from lines; errors name ``source`` and the line."""
    seen: set[str] = set()
    name, parts = None, []
    for lineno, line in enumerate(lines, 1):
        line = line.strip()
        if line.startswith(b">"):
            if name is not None:
                yield name, b"".join(parts)
            words = line[1:].split()
            name, parts = words[0].decode(errors="replace") if words else f"query{len(seen) + 1}", []
            if name in seen:
                raise GenembedError(f"{source}: line {lineno}: duplicate query name '{name}'")
            seen.add(name)
        elif line:
            if name is None:
                raise GenembedError(f"{source}: line {lineno}: sequence before the first '>' header")
            parts.append(line.upper())
    if name is None:
        raise GenembedError(f"{source}: no FASTA records found")
    yield name, b"".join(parts)


def _evalue() -> pl.Expr:
    """E-values as BLAST prints them (three significant digits)."""
    return pl.col("evalue").map_elements(lambda e: f"{e:.3g}", return_dtype=pl.String)


def target(hits: pl.DataFrame) -> pl.Expr:
    """The target sequence name of PAF and m8 rows: ``genome#contig`` (as PanSN names do)."""
    return pl.col("genome") + "#" + pl.col("contig")


def _json_rows(hits: pl.DataFrame) -> str:
    return ",\n".join(json.dumps(r) for r in hits.to_dicts())


def format_hits(hits: pl.DataFrame, fmt: str, header: bool = True) -> str:
    """Hits or loci as TSV (with ``header``), JSON lines of a list, BED6, PAF or BLAST tabular. PAF and
    m8 rows need loci with ``query_length`` and ``contig_length`` columns (see :func:`with_lengths`)."""
    if fmt == "tsv":
        if "evalue" in hits.columns:  # tiny values: scientific notation
            hits = hits.with_columns(_evalue())
        return hits.write_csv(separator="\t", float_precision=6, include_header=header)
    if fmt == "json":
        return "[\n" + _json_rows(hits) + "\n]\n"
    if fmt == "bed":
        strand = pl.col("strand") if "strand" in hits.columns else pl.lit(".")
        return hits.select(
            "contig", "start", "end",
            (pl.col("query") + "|" + pl.col("genome") + "|" + pl.col("rank").cast(pl.String)).alias("name"),
            (pl.col("score").clip(0, 1) * 1000).round().cast(pl.Int64).alias("score"), strand.alias("strand"),
        ).write_csv(separator="\t", include_header=False)
    if fmt == "paf":
        verified = pl.col("verified").fill_null(False)
        span = pl.max_horizontal(pl.col("query_end") - pl.col("query_start"), pl.col("end") - pl.col("start"))
        return hits.select(
            "query", "query_length", "query_start", "query_end",
            pl.when(pl.col("strand") == "-").then(pl.lit("-")).otherwise(pl.lit("+")).alias("strand"),
            target(hits).alias("target"), "contig_length", "start", "end",
            pl.when(verified).then(pl.col("matches")).otherwise((pl.col("score").clip(0, 1) * span).round())
            .cast(pl.Int64).alias("matches"),
            pl.when(verified).then(pl.col("aligned")).otherwise(span).alias("block"),
            pl.lit(255).alias("mapq"),
            pl.format("tp:A:{}", pl.when(pl.col("rank") == 1).then(pl.lit("P")).otherwise(pl.lit("S"))).alias("tp"),
            pl.format("vf:i:{}", verified.cast(pl.Int64)).alias("vf"),
            pl.format("gs:f:{}", pl.col("score").round(4)).alias("gs"), pl.format("nw:i:{}", "windows").alias("nw"),
            pl.format("ev:f:{}", _evalue()).alias("ev"),
            pl.when(verified).then(pl.format("AS:i:{}\tNM:i:{}\tcg:Z:{}", "aln_score",
                                             pl.col("mismatches") + pl.col("gaps"), "cigar")).alias("aln"),
        ).write_csv(separator="\t", include_header=False, quote_style="never").replace("\t\n", "\n")
    if fmt == "m8":
        verified = pl.col("verified").fill_null(False)
        minus = pl.col("strand") == "-"
        return hits.select(
            "query", target(hits).alias("target"),
            pl.when(verified).then(pl.col("identity") * 100).otherwise(pl.col("score") * 100).round(2).alias("pident"),
            pl.when(verified).then(pl.col("aligned")).otherwise(pl.col("query_end") - pl.col("query_start")).alias("length"),
            pl.when(verified).then(pl.col("mismatches")).otherwise(0).alias("mismatch"),
            pl.when(verified).then(pl.col("gap_opens")).otherwise(0).alias("gapopen"),
            (pl.col("query_start") + 1).alias("qstart"), "query_end",
            pl.when(minus).then(pl.col("end")).otherwise(pl.col("start") + 1).alias("sstart"),
            pl.when(minus).then(pl.col("start") + 1).otherwise(pl.col("end")).alias("send"),
            _evalue().alias("evalue"),
            pl.when(verified).then(pl.col("bitscore")).otherwise(pl.col("score") * pl.col("windows") * 100).round(1)
            .alias("bitscore"),
        ).write_csv(separator="\t", include_header=False)
    raise GenembedError(f"unknown output format {fmt!r} ({', '.join(FORMATS)})")


class HitWriter:
    """Writes batches of hits in one format to a file (atomically: complete or absent) or to
    standard output; Parquet needs a file."""

    def __init__(self, fmt: str, out: str | os.PathLike | None):
        if fmt not in FORMATS:
            raise GenembedError(f"unknown output format {fmt!r} ({', '.join(FORMATS)})")
        if fmt == "parquet" and out is None:
            raise GenembedError("--format parquet needs --out FILE")
        self.fmt, self.out = fmt, out
        self.batches: list[pl.DataFrame] = []
        self.written = 0

    def __enter__(self) -> "HitWriter":
        self._atomic = atomic_path(self.out) if self.out is not None else None
        path = self._atomic.__enter__() if self._atomic else None
        self.path = path
        self.fh: IO[str] = open(path, "w") if path is not None and self.fmt != "parquet" else sys.stdout
        if self.fmt == "json":
            self.fh.write("[\n")
        return self

    def write(self, hits: pl.DataFrame) -> None:
        if self.fmt == "parquet":
            self.batches.append(hits)
        elif hits.height:
            text = _json_rows(hits) if self.fmt == "json" else format_hits(hits, self.fmt, header=self.written == 0)
            self.fh.write((",\n" if self.fmt == "json" and self.written else "") + text)
        self.written += hits.height

    def __exit__(self, kind, value, tb) -> None:
        try:
            if kind is None:
                if self.fmt == "json":
                    self.fh.write("\n]\n")
                if self.fmt == "parquet":
                    pl.concat(self.batches, how="diagonal_relaxed").write_parquet(self.path) if self.batches else \
                        pl.DataFrame().write_parquet(self.path)
                self.fh.flush()
        except OSError as exc:  # a full disk on the last writes: the temporary goes with the error
            kind, value, tb = type(exc), exc, exc.__traceback__
        finally:
            if self.fh is not sys.stdout:
                try:
                    self.fh.close()
                except OSError as exc:
                    kind, value, tb = type(exc), exc, exc.__traceback__
            if self._atomic:
                self._atomic.__exit__(kind, value, tb)
