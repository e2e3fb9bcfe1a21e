"""Genome and contig vectors (issue 32): the mean window vector of each genome and contig, distances by
best hits or mean vectors, a UPGMA tree (genembed compare), binning, and the index's genome and contig
levels, on real E. coli sequence embedded with the bundled model."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from genembed.reports.compare import upgma_newick
from genembed.data.store import sequence_vectors
from genembed.data.layout import discover


def _mutated(seq: bytes, rate: float, seed: int) -> bytes:
    """``seq`` with a share ``rate`` of its bases substituted (each by one of the other three)."""
    rng = np.random.default_rng(seed)
    bases = np.frombuffer(b"ACGT", dtype=np.uint8)
    codes = np.searchsorted(bases, np.frombuffer(seq, dtype=np.uint8))
    at = rng.random(len(codes)) < rate
    codes[at] = (codes[at] + rng.integers(1, 4, int(at.sum()))) % 4
    return bases[codes].tobytes()


@pytest.fixture(scope="module")
def evolved(tmp_path_factory, ecoli_sequence):
    """A 60-kb E. coli stretch, an exact copy, copies with 2%, 10% and 25% substitutions, and another
    stretch, each embedded as a genome of its own."""
    from dataclasses import replace

    from genembed.run.pipeline import embed_genome
    from helpers import default_plan

    d = tmp_path_factory.mktemp("compare")
    plan = default_plan()
    plan = replace(plan, windows=replace(plan.windows, shard_size=100), embed=replace(plan.embed, precision="fp32"))
    base = ecoli_sequence[:60_000]
    genomes = {"eco": base, "copy": base, "eco_2": _mutated(base, 0.02, 1), "eco_10": _mutated(base, 0.10, 2),
               "eco_25": _mutated(base, 0.25, 3), "other": ecoli_sequence[120_000:180_000]}
    for name, seq in genomes.items():
        fasta = d / f"{name}.fa"
        fasta.write_bytes(b">chr\n" + seq + b"\n")
        embed_genome(plan, fasta, name, d / "results")
    return d


def test_a_genome_and_its_copy_are_nearest_and_an_evolved_series_is_ordered_by_divergence(evolved):
    out = evolved / "compare"
    res = subprocess.run([sys.executable, "-m", "genembed.run.cli", "compare", "--embeddings", str(evolved / "results"),
                          "--out", str(out)], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    table = pl.read_csv(out / "distances.tsv", separator="\t")
    d = {g: dict(zip(table["genome"], table[g])) for g in table["genome"]}
    assert d["eco"]["copy"] == pytest.approx(0, abs=1e-4)  # float16 vectors: a cosine of 1 to 5 digits
    assert "eco: nearest copy" in res.stdout
    assert d["eco"]["eco_2"] < d["eco"]["eco_10"] < d["eco"]["eco_25"]
    np.testing.assert_allclose(pl.read_parquet(out / "distances.parquet").drop("genome").to_numpy(),
                               table.drop("genome").to_numpy(), atol=1e-6)
    tree = (out / "tree.nwk").read_text().strip()
    assert tree.endswith(";") and tree.count("(") == tree.count(")") == len(d) - 1
    assert all(name in tree for name in d)
    page = (out / "compare.html").read_text()
    assert "data:image/png;base64," in page and (out / "genomes.png").stat().st_size > 1000
    assert all(name in page for name in d)


def test_the_genome_level_agrees_with_a_kmer_sketch_and_names_each_genomes_nearest(evolved):
    """Where sourmash is installed, Mash distances of the same FASTAs are computed beside the genome
    vectors' and their Spearman agreement over genome pairs is high on an evolved series."""
    pytest.importorskip("sourmash")
    from genembed.reports.compare import compare

    c = compare(discover(evolved / "results"))
    near = {r["genome"]: r["nearest"] for r in c.nearest(1).iter_rows(named=True)}
    assert near["eco"] == "copy" and near["copy"] == "eco" and near["eco_2"] in ("eco", "copy")
    i = {n: k for k, n in enumerate(c.names)}
    assert c.sketch[i["eco"], i["copy"]] == 0 and c.sketch[i["eco"], i["eco_2"]] < c.sketch[i["eco"], i["eco_10"]]
    assert c.agreement > 0.7, c.agreement
    assert "sourmash" in c.sketch_note


def test_adding_a_genome_leaves_the_other_genomes_vectors_byte_identical(evolved, tmp_path):
    before = {g.name: sequence_vectors(g) for g in discover(evolved / "results")}
    for name, v in before.items():
        assert v.contigs["contig"].to_list() == ["chr"] and v.contigs["windows"][0] > 50
        np.testing.assert_array_equal(v.contig_vectors[0], v.vector)  # one contig: the genome's vector
    again = {g.name: sequence_vectors(g) for g in discover(evolved / "results") if g.name != "other"}
    assert all(again[n].vector.tobytes() == before[n].vector.tobytes() for n in again)


def test_the_tree_joins_the_closest_pair_first():
    d = np.array([[0, 0.1, 0.5], [0.1, 0, 0.5], [0.5, 0.5, 0]])
    assert upgma_newick(["a", "b", "c"], d) in ("((a:0.05,b:0.05):0.2,c:0.25);", "(c:0.25,(a:0.05,b:0.05):0.2);")


def test_contigs_of_a_mixed_set_are_binned_by_source_with_tnf_beside_and_a_bad_truth_is_refused(tmp_path, ecoli_sequence):
    """genembed compare --bins: the contigs of one mixed assembly (E. coli and C. elegans pieces) binned
    by their vectors; the adjusted Rand index against the truth, and TNF's in the same run."""
    import gzip

    from dataclasses import replace

    from genembed.run.pipeline import embed_genome
    from helpers import REPO, default_plan

    worm = b"".join(line.strip() for line in gzip.open(REPO / "resources/example/C.elegans.fa.gz")
                    if not line.startswith(b">"))[200_000:240_000]
    pieces = {f"eco{i}": ecoli_sequence[i * 10_000 : (i + 1) * 10_000] for i in range(4)}
    pieces |= {f"worm{i}": worm[i * 10_000 : (i + 1) * 10_000] for i in range(4)}
    fasta = tmp_path / "mixed.fa"
    fasta.write_bytes(b"".join(b">" + n.encode() + b"\n" + s + b"\n" for n, s in pieces.items()))
    plan = default_plan()
    embed_genome(replace(plan, embed=replace(plan.embed, precision="fp32")), fasta, "mixed", tmp_path / "results")
    truth = tmp_path / "truth.tsv"
    truth.write_text("contig\tsource\n" + "".join(f"{n}\t{n.rstrip('0123456789')}\n" for n in pieces))
    cmd = [sys.executable, "-m", "genembed.run.cli", "compare", "--embeddings", str(tmp_path / "results"), "--out",
           str(tmp_path / "bins"), "--bins", "2", "--truth", str(truth)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert "genome vectors 1.000" in res.stdout and "TNF" in res.stdout
    bins = pl.read_csv(tmp_path / "bins" / "contig_bins.tsv", separator="\t")
    assert bins.height == 8 and bins.group_by("truth").agg(pl.col("bin").n_unique())["bin"].to_list() == [1, 1]
    truth.write_text("eco0\teco\n")
    res = subprocess.run(cmd, capture_output=True, text=True)
    assert res.returncode != 0 and "the truth names no source for 7 contig(s)" in res.stderr


def test_best_hits_keep_growing_with_divergence_where_mean_vectors_saturate(evolved):
    """Two copies mutated independently (10% and 25%) differ more from each other (about 33% of sites)
    than the 25% copy from the original. Best hits of the window sets see it; the mean vectors, which
    both drift toward uniform composition, do not."""
    from genembed.reports.compare import compare

    genomes = [g for g in discover(evolved / "results") if g.name in ("eco", "eco_10", "eco_25")]
    for distance, farther in (("best-hits", True), ("mean", False)):
        c = compare(genomes, sketch=False, distance=distance)
        i = {n: k for k, n in enumerate(c.names)}
        assert bool(c.distances[i["eco_10"], i["eco_25"]] > c.distances[i["eco"], i["eco_25"]]) == farther, distance
    assert "best hits" in compare(genomes, sketch=False).method  # auto: these few windows fit in memory


def test_the_index_finds_the_nearest_genomes_and_contigs_of_a_whole_query(evolved, tmp_path):
    """genembed query --level genome|contig: a query's mean piece vector against the index's small
    exact indexes of genome and contig vectors (made from each genome's own part)."""
    import polars as pl

    from genembed.search.build import build_index
    from genembed.data.layout import PLAN
    from genembed.encode.plan import RunPlan
    from genembed.search.query import Index

    build_index(discover(evolved / "results"), tmp_path / "index", RunPlan.read(evolved / "results" / PLAN))
    index = Index.open(tmp_path / "index")
    seq = index.genome("eco_10").fetch("chr", 0, 60_000)
    hits = index.search_level({"q": seq}, "genome", k=3)
    assert hits["genome"][0] == "eco_10" and hits["distance"][0] < 1e-3 and hits.height == 3
    assert hits["rank"].to_list() == [1, 2, 3] and (hits["similarity"].diff().drop_nulls() <= 0).all()
    contigs = index.search_level({"q": seq}, "contig", k=2, genomes=["eco", "eco_25"])
    assert set(contigs["genome"]) <= {"eco", "eco_25"} and contigs["contig"].to_list() == ["chr", "chr"]
    index.close()
    fasta = tmp_path / "q.fa"
    fasta.write_bytes(b">q\n" + seq + b"\n")
    res = subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(tmp_path / "index"), "--fasta",
                          str(fasta), "--level", "genome", "-k", "2"], capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    assert res.stdout.splitlines()[1].split("\t")[:4] == ["q", "1", "genome", "eco_10"]
    res = subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(tmp_path / "index"), "--fasta",
                          str(fasta), "--level", "contig", "--format", "paf"], capture_output=True, text=True)
    assert res.returncode != 0 and "--level contig finds whole contigs" in res.stderr


def test_a_genomes_vectors_come_from_its_stitched_file_only_while_it_matches_its_shards(evolved, tmp_path):
    import os
    import shutil

    from genembed.data.store import stored_vectors, window_set_vectors
    from genembed.data.store import stitch

    root = tmp_path / "results"
    shutil.copytree(evolved / "results", root)
    (g,) = [x for x in discover(root) if x.name == "eco_2"]
    (Path(g.shards[0]).parent / "all.h5").unlink(missing_ok=True)
    assert stored_vectors(g) is None  # no stitched file
    stitch(g.shards, Path(g.shards[0]).parent / "all.h5", g.windows, g.name)
    got, made = stored_vectors(g), window_set_vectors(g.name, g.windows, g.shards)
    assert got is not None and got.vector.tobytes() == made.vector.tobytes()
    later = (Path(g.shards[0]).parent / "all.h5").stat().st_mtime + 10
    os.utime(g.shards[0], (later, later))  # a shard re-embedded after the stitch: its vectors are not trusted
    assert stored_vectors(g) is None
