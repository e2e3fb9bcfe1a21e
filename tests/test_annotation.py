import gzip

import numpy as np
import polars as pl
import pytest

from genembed.annotation import Coverage, WindowLabeler, check_contigs, gene_starts, promoter_regions, read_annotation
from genembed.errors import GenembedError

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
