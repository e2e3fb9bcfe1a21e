import gzip

import numpy as np
import polars as pl
import pytest

from genembed.data.annotation import (
    Coverage, WindowLabeler, check_contigs, gene_starts, promoter_regions, read_annotation, read_promoter_bed, with_classes,
)
from genembed.errors import GenembedError
from helpers import REPO

GTF = """chr1\tsrc\tgene\t1001\t2000\t.\t+\t.\tgene_id "g1";
chr1\tsrc\ttranscript\t1001\t2000\t.\t+\t.\tgene_id "g1"; transcript_id "t1";
chr1\tsrc\tCDS\t1101\t1900\t.\t+\t0\tgene_id "g1"; transcript_id "t1";
chr1\tsrc\tgene\t5001\t6000\t.\t-\t.\tgene_id "g2";
"""


def test_gff3_of_the_example_parses_with_zero_based_coordinates(ecoli_slice):
    features = read_annotation(ecoli_slice[1])
    thrl = features.filter(pl.col("type") == "gene").row(0, named=True)
    assert (thrl["start"], thrl["end"], thrl["strand"]) == (189, 255, "+")  # GFF 190..255
    assert set(features["type"]) >= {"gene", "CDS"}


def test_promoters_lie_upstream_of_gene_starts_on_either_strand(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    features = read_annotation(tmp_path / "a.gtf")
    assert gene_starts(features).rows() == [("chr1", 1000, "+"), ("chr1", 5999, "-")]
    regions = promoter_regions(features, upstream=200, downstream=50, contigs={"chr1": 6100})
    # + strand: [tss-200, tss+50); - strand: [tss+1-50, tss+1+200) clipped to the contig end
    assert regions.rows() == [("chr1", 800, 1050), ("chr1", 5950, 6100)]


def test_coverage_counts_overlapping_bases_of_merged_intervals():
    cov = Coverage(pl.DataFrame({"contig": ["a", "a", "a"], "start": [10, 15, 40], "end": [20, 30, 50]}))
    got = cov.overlap(np.array(["a", "a", "a", "b"]), np.array([0, 12, 25, 0]), np.array([100, 45, 35, 5]))
    assert got.tolist() == [30, 23, 5, 0]


def test_windows_get_promoter_labels_and_annotation_classes(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    lab = WindowLabeler(read_annotation(tmp_path / "a.gtf"), {"chr1": 7000}, 200, 50)
    w = pl.DataFrame({"contig": ["chr1"] * 4, "start": [0, 700, 1200, 3000], "end": [500, 1200, 1700, 3500]})
    out = lab.label(w)
    assert out["promoter"].to_list() == [False, True, False, False]
    assert out["annotation_class"].to_list() == ["intergenic", "upstream", "CDS", "intergenic"]


def test_bad_annotation_files_are_refused_with_the_line(tmp_path):
    (tmp_path / "b.gff").write_text("chr1\tsrc\tgene\t10\n")
    with pytest.raises(GenembedError, match=r"b.gff: line 1: expected 9 tab-separated"):
        read_annotation(tmp_path / "b.gff")
    (tmp_path / "c.gff").write_text("##gff-version 3\nchr1\tsrc\tgene\tten\t20\t.\t+\t.\tID=x\n")
    with pytest.raises(GenembedError, match="line 2: start/end are not integers"):
        read_annotation(tmp_path / "c.gff")
    features = read_annotation(_gz(tmp_path / "d.gff.gz", "chrX\tsrc\tgene\t1\t20\t.\t+\t.\tID=x\n"))
    with pytest.raises(GenembedError, match="contig 'chrX' is not in the genome FASTA"):
        check_contigs(features, {"chr1": 100}, "d.gff.gz")
    with pytest.raises(GenembedError, match="past its length 10"):
        check_contigs(features, {"chrX": 10}, "d.gff.gz")


def _gz(path, text):
    with gzip.open(path, "wt") as fh:
        fh.write(text)
    return path


EXAMPLE = REPO / "resources/example"


def test_gtf_and_gff3_of_the_same_real_annotation_give_the_same_gene_starts():
    """C. elegans slice: WormBase GFF3 and its gffread GTF (transcripts only, no gene lines, no biotypes)."""
    gff = gene_starts(read_annotation(EXAMPLE / "C.elegans.gff.gz"))
    gtf = gene_starts(read_annotation(EXAMPLE / "C.elegans.gtf.gz"))
    keys = ["contig", "tss", "strand"]
    assert gff.height > 300 and gff.join(gtf, on=keys, how="anti").is_empty()  # every GFF3 start is in the GTF
    # the GTF's extra starts are the pseudogenic transcripts, which the GFF3's biotypes let us leave out
    features = read_annotation(EXAMPLE / "C.elegans.gff.gz")
    ends = features.with_columns(pl.when(pl.col("strand") == "+").then(pl.col("start")).otherwise(pl.col("end") - 1).alias("tss"))
    extra = gtf.join(gff, on=keys, how="anti").join(ends, on=keys)
    assert set(extra.filter(pl.col("type").str.contains("transcript|tRNA"))["type"]) == {"pseudogenic_transcript", "pseudogenic_tRNA"}
    # minus-strand starts are the transcript ends: Y74C9A.6 (snoRNA, 3747..3909 on -) starts at 0-based 3908
    assert ("I", 3908, "-") in gff.rows() and ("I", 3908, "-") in gtf.rows()


def test_rna_genes_get_their_own_classes_from_types_or_biotypes(tmp_path):
    ecoli = with_classes(read_annotation(EXAMPLE / "ecoli_k12_mg1655.gff.gz"))
    genes = ecoli.filter(pl.col("type") == "gene").group_by("rna_class").len()
    assert dict(genes.iter_rows()) == {None: 4288, "ncRNA": 98, "rRNA": 22, "tRNA": 86}  # from gene_biotype
    (tmp_path / "e.gtf").write_text(
        'chr1\tensembl\tgene\t101\t172\t.\t+\t.\tgene_id "g"; gene_biotype "tRNA";\n'
        'chr1\tensembl\tgene\t1001\t3000\t.\t-\t.\tgene_id "h"; gene_type "lncRNA";\n'
        'chr1\tensembl\texon\t1001\t1200\t.\t-\t.\tgene_id "h"; gene_type "lncRNA";\n')
    lab = WindowLabeler(read_annotation(tmp_path / "e.gtf"), {"chr1": 5000}, 200, 50)
    w = pl.DataFrame({"contig": ["chr1"] * 4, "start": [0, 400, 1200, 4000], "end": [500, 900, 1700, 4500]})
    assert lab.label(w)["annotation_class"].to_list() == ["tRNA", "intergenic", "ncRNA", "intergenic"]


def test_intron_windows_of_eukaryotic_genes_are_not_called_intergenic(tmp_path):
    (tmp_path / "i.gff").write_text(
        "chr1\tsrc\tgene\t1001\t9000\t.\t+\t.\tID=g\nchr1\tsrc\tmRNA\t1001\t9000\t.\t+\t.\tID=t;Parent=g\n"
        "chr1\tsrc\tCDS\t1101\t1500\t.\t+\t0\tParent=t\nchr1\tsrc\tCDS\t8001\t8900\t.\t+\t0\tParent=t\n")
    lab = WindowLabeler(read_annotation(tmp_path / "i.gff"), {"chr1": 12000}, 200, 50)
    w = pl.DataFrame({"contig": ["chr1"] * 3, "start": [4000, 8000, 10000], "end": [4500, 8500, 10500]})
    assert lab.label(w)["annotation_class"].to_list() == ["UTR/intron", "CDS", "intergenic"]


def test_a_promoter_bed_takes_precedence_over_the_annotation(tmp_path):
    (tmp_path / "a.gtf").write_text(GTF)
    (tmp_path / "p.bed").write_text("track name=tss\nchr1\t3000\t3001\tt1\t0\t-\nchr1\t4000\t4300\tp2\nchr1\t500\t501\n")
    contigs = {"chr1": 7000}
    regions = read_promoter_bed(tmp_path / "p.bed", contigs, upstream=200, downstream=50)
    # - strand TSS at 3000: [3001-50, 3001+200); unstranded TSS at 500: both orientations [300, 701); a region as is
    assert regions.rows() == [("chr1", 300, 550), ("chr1", 451, 701), ("chr1", 2951, 3201), ("chr1", 4000, 4300)]
    lab = WindowLabeler(read_annotation(tmp_path / "a.gtf"), contigs, 200, 50, promoters=regions)
    # BED regions only, then the GTF's promoter of g1 at [800, 1050), which the BED replaces
    w = pl.DataFrame({"contig": ["chr1"] * 4, "start": [0, 2900, 4200, 850], "end": [400, 3000, 4700, 1000]})
    assert lab.label(w)["promoter"].to_list() == [True, True, True, False]


@pytest.mark.parametrize("text, message", [
    ("chr1\t10\n", r"p.bed: line 1: expected at least 3 tab-separated BED columns, found 2"),
    ("chr1\tten\t20\n", r"p.bed: line 1: start/end are not integers"),
    ("#c\nchr1\t20\t10\n", r"p.bed: line 2: invalid interval 20-10"),
    ("chrZ\t1\t10\n", r"p.bed: line 1: contig 'chrZ' is not in the genome FASTA"),
    ("chr1\t1\t8000\n", r"p.bed: line 1: end 8000 is past the length 7000 of 'chr1'"),
    ("track name=x\n", r"p.bed: no intervals"),
])
def test_bad_promoter_beds_are_refused_with_the_line(tmp_path, text, message):
    (tmp_path / "p.bed").write_text(text)
    with pytest.raises(GenembedError, match=message):
        read_promoter_bed(tmp_path / "p.bed", {"chr1": 7000}, 200, 50)


def test_centred_labels_need_a_promoter_in_the_windows_central_bin(tmp_path):
    """A window that only grazes a promoter region at its edge is not a promoter window when labels
    are centred (the bin its track value stands for holds no promoter)."""
    (tmp_path / "a.gtf").write_text(GTF)
    features = read_annotation(tmp_path / "a.gtf")
    w = pl.DataFrame({"contig": ["chr1"] * 3, "start": [0, 550, 1000], "end": [1000, 1550, 2000]})
    edge = WindowLabeler(features, {"chr1": 7000}, 200, 50).label(w)["promoter"].to_list()
    centre = WindowLabeler(features, {"chr1": 7000}, 200, 50, centre=250).label(w)["promoter"].to_list()
    # the region is [800, 1050): window 0 holds it at its edge, window 1 in its central 250 bp [925, 1175)
    assert edge == [True, True, True] and centre == [False, True, False]


OPERONS = "".join(
    f"chr1\tsrc\tgene\t{a}\t{b}\t.\t{strand}\t.\tID={name}\n" for name, a, b, strand in [
        ("a1", 1001, 2000, "+"), ("a2", 2021, 3000, "+"), ("a3", 3001, 3500, "+"),  # an operon: gaps 20 and 0 bp
        ("b1", 3601, 4000, "-"), ("b2", 4031, 5000, "-"),  # an operon on -: its first gene is b2 (gap 30 bp)
        ("c1", 5101, 6000, "+"),  # 100 bp past b2, on the other strand: its own promoter
        ("c2", 6201, 7000, "+"),  # 200 bp after c1: too far for one operon
        ("d1", 7021, 8000, "-"), ("d2", 8011, 9000, "+"),  # 10 bp apart but on opposite strands
    ])


def test_operon_aware_labels_give_a_promoter_to_each_operons_first_gene_only(tmp_path):
    (tmp_path / "a.gff").write_text("##gff-version 3\n" + OPERONS)
    features = read_annotation(tmp_path / "a.gff")
    every = gene_starts(features)
    heads = gene_starts(features, operon_gap=50)
    assert len(every) == 9
    # a1 (+, first), b2 (-, its tss is its last base), c1, c2, d1, d2
    assert heads.rows() == [("chr1", 1000, "+"), ("chr1", 4999, "-"), ("chr1", 5100, "+"), ("chr1", 6200, "+"),
                            ("chr1", 7999, "-"), ("chr1", 8010, "+")]
    labels = WindowLabeler(features, {"chr1": 10_000}, 200, 50, operon_gap=50).label(pl.DataFrame(
        {"contig": ["chr1"] * 3, "start": [1900, 2900, 4900], "end": [2100, 3100, 5100]}))
    assert labels["promoter"].to_list() == [False, False, True]  # a2 and a3 start inside an operon; b2 and c1 head theirs
