"""Querying like a search tool, on an index built with the default config (the bundled model, 500-bp
windows every 250 bp) over 200 kb of real E. coli: queries of any length become loci, both strands
are searched, region queries work from the index folder alone, and hits load as PAF, m8 or BED."""

from __future__ import annotations

import shutil
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from genembed.run.cli import main
from genembed.errors import GenembedError
from genembed.data.windows import mutate
from genembed.search.loci import LOCUS_COLUMNS, pieces
from genembed.search.query import Index, LocusSearch, Region
from genembed.encode.tokenize import reverse_complement

CONTIG = "NC_000913.3"


@pytest.fixture(scope="module")
def index(default_index):
    ix = Index.open(default_index["dir"])
    yield ix
    ix.close()


def test_a_query_is_cut_into_the_index_windows_with_the_last_flush_with_its_end():
    assert pieces(400, 500, 250) == [(0, 400)]
    assert pieces(1000, 500, 250) == [(0, 500), (250, 750), (500, 1000)]
    assert pieces(1100, 500, 250) == [(0, 500), (250, 750), (500, 1000), (600, 1100)]


@pytest.mark.parametrize("start, length", [(100_000, 1_000), (40_000, 5_000), (60_000, 100_000), (120_100, 5_000)])
def test_a_region_of_any_length_maps_to_itself_at_rank_1(index, start, length):
    loci = index.search_region(f"eco:{CONTIG}:{start}-{start + length}", LocusSearch(k=5))
    assert loci.columns == LOCUS_COLUMNS
    top = loci.row(0, named=True)
    assert (top["contig"], top["strand"], top["rank"], top["query_start"], top["query_end"]) == (CONTIG, "+", 1, 0, length)
    grid = start - start % 250 if start % 250 else start  # windows lie on the index's 250-bp grid
    assert abs(top["start"] - grid) <= 250 and abs(top["end"] - (start + length)) <= 250
    assert top["windows"] == len(pieces(length, 500, 250)) and top["evalue"] < 1e-6


def test_a_long_sequence_is_searched_not_refused(index, ecoli_sequence):
    seq = ecoli_sequence[150_000:160_000]  # 10 kb: more tokens than the model takes at once
    top = index.search_loci({"q": seq}, LocusSearch(k=1)).row(0, named=True)
    assert (top["start"], top["end"], top["strand"], top["windows"]) == (150_000, 160_000, "+", 39)


def test_the_reverse_complement_finds_its_locus_on_the_minus_strand(index, ecoli_sequence):
    window = ecoli_sequence[7_000:7_500]
    top = index.search_loci({"rc": reverse_complement(window)}, LocusSearch(k=3)).row(0, named=True)
    assert (top["start"], top["end"], top["strand"], top["rank"]) == (7_000, 7_500, "-", 1)
    long = index.search_loci({"rc": reverse_complement(ecoli_sequence[30_000:35_000])}, LocusSearch(k=1)).row(0, named=True)
    assert (long["start"], long["end"], long["strand"]) == (30_000, 35_000, "-")  # told by the order of the pieces
    forward = index.search_loci({"rc": reverse_complement(window)}, LocusSearch(k=3, strand="forward"))
    assert set(forward["strand"]) == {"+"}


def test_mutated_reverse_complemented_windows_find_their_locus(index, ecoli_sequence):
    rng = np.random.default_rng(7)
    starts = rng.integers(0, (len(ecoli_sequence) - 500) // 250, 100) * 250
    queries = {str(s): reverse_complement(mutate(ecoli_sequence[s : s + 600], 500, 0.02, 0.1, rng)) for s in starts}
    loci = index.search_loci(queries, LocusSearch(k=1))
    found = {int(q): (s, strand) for q, s, strand in loci.select("query", "start", "strand").iter_rows()}
    hits = sum(abs(found[s][0] - s) <= 250 and found[s][1] == "-" for s in starts)
    assert hits >= 95, f"{hits} of 100 mutated (2%), reverse-complemented windows found on the minus strand"


def test_a_region_query_uses_the_stored_vectors_of_its_windows(index):
    region = Region("eco", CONTIG, 10_000, 11_000)
    rows = index.searcher.rows_at("eco", CONTIG, [10_000, 10_250, 10_500], 500)
    assert (rows >= 0).all()
    top = index.search_region(region, LocusSearch(k=1)).row(0, named=True)
    assert top["score"] == pytest.approx(1.0, abs=1e-6)  # exact: the indexed vectors themselves
    hits = index.search_region(region, LocusSearch(k=2), exclude_self=True)
    assert not ((hits["start"] < 11_000) & (hits["end"] > 10_000)).any()


def test_a_moved_index_answers_region_and_sequence_queries(tmp_path, default_index, ecoli_sequence):
    moved = tmp_path / "moved"
    shutil.copytree(default_index["dir"], moved)
    work = tmp_path / "work"
    shutil.copytree(default_index["results"], work)  # the originals the index was built from ...
    ix = Index.open(moved)
    assert ix.manifest["genomes"]["eco"] == "genomes/eco/genome.fa.gz"  # ... are not what it reads
    shutil.rmtree(work)
    region = ix.search_region(f"eco:{CONTIG}:20000-21000", LocusSearch(k=1)).row(0, named=True)
    seq = ix.search_loci({"q": ecoli_sequence[20_000:21_000]}, LocusSearch(k=1)).row(0, named=True)
    assert (region["start"], region["end"]) == (seq["start"], seq["end"]) == (20_000, 21_000)
    ix.close()
    (moved / "genomes/eco/genome.fa.gz").unlink()
    with pytest.raises(GenembedError, match=r"genome.fa.gz: genome eco is missing from the index folder; rebuild"):
        Index.open(moved).search_region(f"eco:{CONTIG}:20000-21000")


def test_a_model_that_tells_the_strands_apart_is_searched_twice(built_index, ecoli_sequence):
    """The tiny random BERT embeds a window and its reverse complement differently: the reverse
    complement is searched as a second query, and the strand comes from which one matched."""
    ix = Index.open(built_index["dir"])
    assert not ix.encoder.strand_invariant()
    top = ix.search_loci({"rc": reverse_complement(ecoli_sequence[5_000:6_000])}, LocusSearch(k=1)).row(0, named=True)
    assert (top["start"], top["end"], top["strand"]) == (5_000, 6_000, "-") and top["score"] > 0.999


def test_cli_writes_loci_as_paf_m8_and_bed(tmp_path, default_index, capsys):
    base = ["query", "--index", str(default_index["dir"]), "--region", f"eco:{CONTIG}:100000-101000", "-k", "2"]
    assert main(base + ["--format", "paf"]) == 0
    paf = capsys.readouterr().out.splitlines()[0].split("\t")
    assert paf[:12] == [f"eco:{CONTIG}:100000-101000", "1000", "0", "1000", "+", f"eco#{CONTIG}", "200000", "100000",
                        "101000", "1000", "1000", "255"]
    assert paf[12:14] == ["tp:A:P", "vf:i:1"] and paf[15] == "nw:i:3" and paf[16].startswith("ev:f:")
    assert paf[17:] == ["AS:i:2000", "NM:i:0", "cg:Z:1000="]  # verified: the alignment's own counts
    assert main(base + ["--format", "m8"]) == 0
    m8 = capsys.readouterr().out.splitlines()[0].split("\t")
    assert len(m8) == 12 and m8[1] == f"eco#{CONTIG}" and m8[6:10] == ["1", "1000", "100001", "101000"]  # 1-based
    assert float(m8[10]) < 1e-6
    assert main(base + ["--format", "bed", "--out", str(tmp_path / "loci.bed")]) == 0
    bed = (tmp_path / "loci.bed").read_text().splitlines()[0].split("\t")
    assert bed == [CONTIG, "100000", "101000", f"eco:{CONTIG}:100000-101000|eco|1", "1000", "+"]
    assert main(base + ["--windows"]) == 0
    rows = capsys.readouterr().out.splitlines()
    assert rows[0].split("\t") == ["query", "query_start", "query_end", "rank", "genome", "contig", "start", "end",
                                   "strand", "score"]
    assert len(rows) == 1 + 3 * 2  # three windows, two hits each
    assert main(base + ["--windows", "--format", "paf"]) == 1
    assert "--format paf writes loci" in capsys.readouterr().err


def test_a_fasta_of_many_queries_is_streamed_in_batches(tmp_path, default_index, ecoli_sequence):
    starts = list(range(0, 150_000, 500))
    fasta = tmp_path / "q.fa"
    fasta.write_text("".join(f">q{s}\n{ecoli_sequence[s:s + 700].decode()}\n" for s in starts))
    out = tmp_path / "hits.tsv"
    res = subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(default_index["dir"]),
                          "--fasta", str(fasta), "-k", "1", "--batch-size", "64", "--out", str(out)],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    hits = pl.read_csv(out, separator="\t")
    assert hits.columns == LOCUS_COLUMNS and hits.height == len(starts)
    assert (hits["start"] == pl.Series([int(q[1:]) for q in hits["query"]])).mean() >= 0.95


@pytest.mark.parametrize("argv, message", [
    (["-k", "0"], "-k must be at least 1, not 0"),
    (["-k", "-3"], "-k must be at least 1, not -3"),
    (["--region", "eco:chrZ:1-100"], "unknown contig 'chrZ'"),
    (["--region", "nope:x:1-100"], "genome 'nope' is not in this index"),
])
def test_bad_queries_are_one_line(default_index, capsys, argv, message):
    base = ["query", "--index", str(default_index["dir"])]
    what = [] if "--region" in argv else ["--region", f"eco:{CONTIG}:0-500"]
    assert main(base + what + argv) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and message in err, err
