"""GFF3/GTF annotation: parse features, derive promoter regions upstream of gene starts
(strand-aware), and measure how much of each window overlaps a set of intervals."""

from __future__ import annotations

import os
import re
import zlib
from pathlib import Path

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.io import check_input, open_text

FEATURE_SCHEMA = {"contig": pl.String, "type": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String,
                  "biotype": pl.String, "name": pl.String}
RNA_CLASSES = ("rRNA", "tRNA", "ncRNA")
CLASSES = (*RNA_CLASSES, "upstream", "CDS", "UTR/intron", "intergenic")
# Feature types (GFF3 / SO) and biotypes (GTF gene_biotype / gene_type, Ensembl and GENCODE) per RNA class.
_RNA_NAMES = {
    "rRNA": {"rRNA", "Mt_rRNA", "rRNA_gene"},
    "tRNA": {"tRNA", "Mt_tRNA", "tRNA_gene"},
    "ncRNA": {"ncRNA", "ncRNA_gene", "lnc_RNA", "lncRNA", "lincRNA", "snRNA", "snoRNA", "miRNA", "pre_miRNA",
              "primary_transcript", "piRNA", "scRNA", "scaRNA", "sRNA", "misc_RNA", "antisense_RNA", "RNase_P_RNA",
              "RNase_MRP_RNA", "SRP_RNA", "tmRNA", "Y_RNA", "vault_RNA", "vaultRNA", "telomerase_RNA", "ribozyme",
              "guide_RNA", "circular_ncRNA", "nc_primary_transcript"},
}
_GENE_TYPES = {"gene", "transcript", "mRNA", "ncRNA_gene"} | set().union(*_RNA_NAMES.values())
_BIOTYPE_KEYS = ("gene_biotype", "transcript_biotype", "biotype", "gene_type", "transcript_type")
_ITEM = re.compile(r'(?:[^;"]|"[^"]*")+')  # a ';'-separated attribute; quoted values may hold ';'


def attributes(field: str) -> dict[str, str]:
    """Column 9 as key -> value: GFF3 ``key=value`` (percent-encoded) or GTF ``key "value"`` pairs,
    separated by ``;`` outside quotes."""
    from urllib.parse import unquote

    out: dict[str, str] = {}
    for item in _ITEM.findall(field):
        item = item.strip()
        if re.match(r'[^\s="]+=', item):
            key, value = item.split("=", 1)
            out.setdefault(key, unquote(value))
        elif item:
            key, _, value = item.partition(" ")
            out.setdefault(key, value.strip().strip('"'))
    return out


def biotype_of(field: bytes) -> str | None:
    """The biotype attribute of column 9 (``gene_biotype``, ``biotype``, ``gene_type``...), taken only
    from those keys (never from another attribute's value)."""
    if not any(k.encode() in field for k in _BIOTYPE_KEYS):
        return None
    found = attributes(field.decode(errors="replace"))
    return next((found[k] for k in _BIOTYPE_KEYS if found.get(k)), None)


_NAME_KEYS = ("Name", "gene_name", "gene", "locus_tag", "gene_id", "transcript_id", "ID")


def name_of(field: bytes) -> str | None:
    """A gene's name from column 9: ``Name``, ``gene_name``, ``gene``, ``locus_tag``, ``gene_id``... (the first present)."""
    found = attributes(field.decode(errors="replace"))
    return next((found[k] for k in _NAME_KEYS if found.get(k)), None)


def read_annotation(path: str | os.PathLike) -> pl.DataFrame:
    """Features of a GFF3 or GTF file (plain or gzip) with 0-based half-open coordinates and the
    biotype attribute where there is one (``gene_biotype``, ``biotype``, ``gene_type``...)."""
    path = Path(path)
    check_input(path, "annotation file")
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
            cols["biotype"].append(biotype_of(f[8]))
            cols["name"].append(name_of(f[8]) if cols["type"][-1] in _GENE_TYPES else None)
    return pl.DataFrame(cols, schema=FEATURE_SCHEMA)


def read_promoter_bed(path: str | os.PathLike, contigs: dict[str, int], upstream: int, downstream: int) -> pl.DataFrame:
    """Known promoters or TSSs from a BED file (plain or gzip): contig, start, end.

    A 1-bp interval is a TSS and becomes the region ``upstream`` bp before to ``downstream`` bp
    after it (strand from column 6; without a strand, both orientations). Longer intervals are
    promoter regions and are used as they are."""
    bed = read_bed(path, contigs)
    regions = pl.concat([bed.filter(pl.col("end") - pl.col("start") > 1).select("contig", "start", "end"),
                         _around(bed_starts(bed.filter(pl.col("end") - pl.col("start") == 1)), upstream, downstream, contigs)])
    return regions.sort("contig", "start")


def bed_starts(bed: pl.DataFrame) -> pl.DataFrame:
    """Transcription starts (contig, tss, strand) of BED intervals: a 1-bp interval is a start; a longer
    one a promoter, whose start is its downstream end; an interval without a strand counts on both."""
    both = bed.filter(~pl.col("strand").is_in(["+", "-"]))
    stranded = pl.concat([bed.filter(pl.col("strand").is_in(["+", "-"])), both.with_columns(pl.lit("+").alias("strand")),
                          both.with_columns(pl.lit("-").alias("strand"))])
    tss = (pl.when(pl.col("end") - pl.col("start") == 1).then(pl.col("start"))
           .when(pl.col("strand") == "+").then(pl.col("end") - 1).otherwise(pl.col("start")))
    return stranded.select("contig", tss.alias("tss"), "strand")


def read_bed(path: str | os.PathLike, contigs: dict[str, int]) -> pl.DataFrame:
    """The intervals of a BED file (plain or gzip), checked against the genome's contigs: contig,
    start, end, strand (``.`` without column 6)."""
    path = Path(path)
    check_input(path, "promoter BED file")
    rows: list[tuple[str, int, int, str]] = []
    try:
        with open_text(path) as fh:
            for lineno, raw in enumerate(fh, 1):
                if not raw.strip() or raw.startswith((b"#", b"track", b"browser")):
                    continue
                f = raw.rstrip(b"\r\n").split(b"\t")
                if len(f) < 3:
                    raise GenembedError(f"{path}: line {lineno}: expected at least 3 tab-separated BED columns, found {len(f)}")
                contig = f[0].decode()
                try:
                    start, end = int(f[1]), int(f[2])
                except ValueError:
                    raise GenembedError(f"{path}: line {lineno}: start/end are not integers") from None
                if start < 0 or end <= start:
                    raise GenembedError(f"{path}: line {lineno}: invalid interval {start}-{end}")
                if contig not in contigs:
                    raise GenembedError(f"{path}: line {lineno}: contig '{contig}' is not in the genome FASTA")
                if end > contigs[contig]:
                    raise GenembedError(f"{path}: line {lineno}: end {end} is past the length {contigs[contig]} of '{contig}'")
                rows.append((contig, start, end, f[5].decode() if len(f) >= 6 else "."))
    except (EOFError, OSError, zlib.error) as exc:
        raise GenembedError(f"{path}: cannot read BED ({exc}); is it truncated?") from None
    except UnicodeDecodeError:
        raise GenembedError(f"{path}: not a text BED file (undecodable bytes)") from None
    if not rows:
        raise GenembedError(f"{path}: no intervals")
    return pl.DataFrame(rows, schema={"contig": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String},
                        orient="row")


def check_contigs(features: pl.DataFrame, contigs: dict[str, int], path: str | os.PathLike) -> None:
    """Refuse annotation naming unknown contigs or running past a contig's end."""
    for contig, end in features.group_by("contig").agg(pl.col("end").max()).iter_rows():
        if contig not in contigs:
            raise GenembedError(f"{path}: contig '{contig}' is not in the genome FASTA")
        if end > contigs[contig]:
            raise GenembedError(f"{path}: features on '{contig}' end at {end}, past its length {contigs[contig]}")


def _rna_class(name: pl.Expr) -> pl.Expr:
    expr = pl.lit(None, pl.String)
    for cls in reversed(RNA_CLASSES):
        expr = pl.when(name.is_in(list(_RNA_NAMES[cls]))).then(pl.lit(cls)).otherwise(expr)
    return expr


def with_classes(features: pl.DataFrame) -> pl.DataFrame:
    """Add ``rna_class`` (rRNA, tRNA, ncRNA or null) from the feature type, else from the biotype."""
    return features.with_columns(pl.coalesce(_rna_class(pl.col("type")), _rna_class(pl.col("biotype"))).alias("rna_class"))


TSS = pl.when(pl.col("strand") == "+").then(pl.col("start")).otherwise(pl.col("end") - 1)  # a feature's first transcribed base


def gene_starts(features: pl.DataFrame, operon_gap: int = 0) -> pl.DataFrame:
    """Starts of genes and transcripts (alternative TSSs included; pseudogenes left out):
    contig, tss, strand. ``tss`` is the first transcribed base: ``start`` on the + strand,
    ``end - 1`` on the - strand. With ``operon_gap`` (bacteria), only the first gene of each run
    of same-strand genes whose intergenic gaps are at most that many bp: the genes of an operon
    after its first are transcribed from its promoter, not from one of their own."""
    genes = features.filter(pl.col("type").is_in(list(_GENE_TYPES))
                            & ~pl.col("biotype").fill_null("").str.contains("pseudogene"))
    genes = genes.filter(pl.col("strand").is_in(["+", "-"]))
    if operon_gap > 0:
        genes = operon_heads(genes, operon_gap)
    return genes.select("contig", TSS.alias("tss"), "strand").unique(maintain_order=True)


def operon_heads(genes: pl.DataFrame, gap: int) -> pl.DataFrame:
    """The genes that start an operon: on each contig, in coordinate order, a gene is in the operon
    of the gene before it when both are on the same strand with at most ``gap`` bp between them and
    no gene of the other strand in between; the head is the upstream end (the first on +, the last
    on -). Overlapping genes count as gap 0."""
    g = genes.sort("contig", "start", "end").with_columns(
        pl.col("strand").shift(1).over("contig").alias("_prev_strand"),
        pl.col("end").shift(1).over("contig").alias("_prev_end"),
        pl.col("strand").shift(-1).over("contig").alias("_next_strand"),
        pl.col("start").shift(-1).over("contig").alias("_next_start"),
    )
    joined_before = (pl.col("_prev_strand") == pl.col("strand")) & (pl.col("start") - pl.col("_prev_end") <= gap)
    joined_after = (pl.col("_next_strand") == pl.col("strand")) & (pl.col("_next_start") - pl.col("end") <= gap)
    head = pl.when(pl.col("strand") == "+").then(~joined_before.fill_null(False)).otherwise(~joined_after.fill_null(False))
    return g.filter(head).drop("_prev_strand", "_prev_end", "_next_strand", "_next_start")


def _around(starts: pl.DataFrame, upstream: int, downstream: int, contigs: dict[str, int]) -> pl.DataFrame:
    plus = pl.col("strand") == "+"
    regions = starts.select(
        "contig",
        pl.when(plus).then(pl.col("tss") - upstream).otherwise(pl.col("tss") + 1 - downstream).alias("start"),
        pl.when(plus).then(pl.col("tss") + downstream).otherwise(pl.col("tss") + 1 + upstream).alias("end"),
    )
    lengths = pl.DataFrame({"contig": list(contigs), "length": list(contigs.values())},
                           schema={"contig": pl.String, "length": pl.Int64})
    return (regions.join(lengths, on="contig")
            .with_columns(pl.col("start").clip(lower_bound=0), pl.min_horizontal("end", "length").alias("end"))
            .filter(pl.col("end") > pl.col("start")).select("contig", "start", "end"))


def promoter_regions(features: pl.DataFrame, upstream: int, downstream: int,
                     contigs: dict[str, int], operon_gap: int = 0) -> pl.DataFrame:
    """Regions from ``upstream`` bp before to ``downstream`` bp after each gene start (with
    ``operon_gap``: each operon's first gene, :func:`operon_heads`), strand-aware."""
    return _around(gene_starts(features, operon_gap), upstream, downstream, contigs)


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
    """Promoter labels and annotation classes for windows of one genome.

    ``promoters`` (from a BED of known promoters/TSSs) replaces the regions derived from the
    annotation's gene starts; without ``features`` every window's class is ``unannotated``."""

    def __init__(self, features: pl.DataFrame | None, contigs: dict[str, int], upstream: int, downstream: int,
                 promoters: pl.DataFrame | None = None, centre: int | None = None, operon_gap: int = 0):
        self.centre = centre
        if promoters is None:
            if features is None:
                raise ValueError("WindowLabeler needs an annotation or promoter regions")
            promoters = promoter_regions(features, upstream, downstream, contigs, operon_gap)
        self.promoters = Coverage(promoters)
        self.classes: dict[str, Coverage] | None = None
        if features is not None:
            features = with_classes(features)
            cds = features.filter(pl.col("type") == "CDS").select("contig", "start", "end")
            genic = features.filter(pl.col("type").is_in(list(_GENE_TYPES)) | pl.col("rna_class").is_not_null()
                                    | (pl.col("type") == "pseudogene")).select("contig", "start", "end")
            self.classes = {c: Coverage(features.filter(pl.col("rna_class") == c).select("contig", "start", "end"))
                            for c in RNA_CLASSES}
            self.classes |= {"CDS": Coverage(cds), "annotated": Coverage(pl.concat([promoters, cds])),
                             "genic": Coverage(pl.concat([promoters, cds, genic]))}

    def label(self, windows: pl.DataFrame) -> pl.DataFrame:
        """``promoter``: the window's central ``centre`` bp (the bin its score stands for on the
        tracks; the whole window when ``centre`` is None) overlap a promoter region.

        ``annotation_class``: rRNA, tRNA or ncRNA (in that order) when an RNA gene covers at least
        min(50 bp, half the window); otherwise whichever of upstream (the promoter regions), CDS,
        UTR/intron (other gene or transcript bases) and intergenic covers most of the window
        (ties go to upstream, then CDS, then UTR/intron)."""
        contigs = windows["contig"].to_numpy()
        starts, ends = windows["start"].to_numpy(), windows["end"].to_numpy()
        up = self.promoters.overlap(contigs, starts, ends)
        promoter = up > 0
        if self.centre is not None:
            width = np.minimum(self.centre, ends - starts)
            mid = starts + (ends - starts - width) // 2
            promoter = self.promoters.overlap(contigs, mid, mid + width) > 0
        if self.classes is None:
            return windows.with_columns(pl.Series("promoter", promoter), pl.lit("unannotated").alias("annotation_class"))
        cov = {name: c.overlap(contigs, starts, ends) for name, c in self.classes.items()}
        cds = cov["CDS"]
        other_genic = cov["genic"] - cov["annotated"]
        rest = (ends - starts) - cov["genic"]
        cls = np.where((up >= cds) & (up >= other_genic) & (up >= rest) & (up > 0), "upstream",
                       np.where((cds >= other_genic) & (cds >= rest) & (cds > 0), "CDS",
                                np.where(other_genic >= rest, "UTR/intron", "intergenic"))).astype(object)
        rna_min = np.maximum(1, np.minimum(50, (ends - starts) // 2))
        for c in reversed(RNA_CLASSES):
            cls = np.where(cov[c] >= rna_min, c, cls)
        return windows.with_columns(pl.Series("promoter", promoter),
                                    pl.Series("annotation_class", cls.tolist(), dtype=pl.String))
