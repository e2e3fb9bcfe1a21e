"""genembed evaluate: its measures on constructed cases whose answer is known, and the CLI end to end."""

from __future__ import annotations

import re
import subprocess
import sys

import numpy as np
import polars as pl
import pytest

from genembed.reports.evaluate import EvalSettings, evaluate, hit_rates, is_copy, kmer_frequencies, sample_windows
from genembed.data.windows import gc_content, mutate
from genembed.data.genome import Genome, prepare_fasta
from genembed.encode.tokenize import reverse_complement
from helpers import REPO
from genembed.encode.scan import Scanner, sequence_embedder



@pytest.fixture(scope="module")
def two_genomes(tmp_path_factory, prepared_slice):
    """The E. coli slice and the bundled C. elegans 1% slice, prepared."""
    d = tmp_path_factory.mktemp("eval")
    worm = d / "worm.fa.gz"
    prepare_fasta(REPO / "resources/example/C.elegans.fa.gz", worm)
    genomes = {"eco": Genome(prepared_slice), "worm": Genome(worm)}
    yield genomes
    for g in genomes.values():
        g.close()


def estimate(results: pl.DataFrame, measure: str, method: str) -> float:
    return results.filter((pl.col("measure") == measure) & (pl.col("method") == method))["estimate"].item()


def test_a_hit_on_a_repeat_of_the_source_counts_as_right_and_an_unrelated_window_does_not():
    rng = np.random.default_rng(5)
    original = rng.choice(list(b"ACGT"), 2000).astype(np.uint8).tobytes()
    other = rng.choice(list(b"ACGT"), 500).astype(np.uint8).tobytes()
    assert is_copy(original[700:1200], original, 250)
    assert is_copy(reverse_complement(original[1600:2000] + other[:100]), original, 250)  # 400 bp shared, other strand
    assert is_copy(mutate(original[100:700], 500, 0.01, 0.0, rng), original, 250)  # a repeat at 99% identity
    assert not is_copy(original[1800:2000] + other[:300], original, 250)  # 200 bp shared: under half a window
    assert not is_copy(mutate(original[100:700], 500, 0.2, 0.0, rng), original, 250)  # 80% identity: a homolog
    assert not is_copy(other, original, 250)


def test_hit_rate_counts_ties_as_random_draws_and_skips_excluded_candidates():
    scores = np.array([[0.9, 0.5, 0.5, 0.1],
                       [0.2, 0.8, 0.8, 0.8],
                       [0.9, 0.1, 0.3, 0.95]])
    exclude = np.zeros_like(scores, dtype=bool)
    exclude[2, 3] = True  # the only better candidate does not count
    got = hit_rates(scores, np.array([0, 1, 2]), (1, 2), exclude)
    assert got[1].tolist() == pytest.approx([1.0, 1 / 3, 0.0])
    assert got[2].tolist() == pytest.approx([1.0, 2 / 3, 1.0])


def test_mutate_changes_the_expected_share_of_bases_and_keeps_the_length():
    rng = np.random.default_rng(0)
    tail = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, 20_032)].tobytes()
    assert mutate(tail, 20_000, 0.0, 0.1, rng) == tail[:20_000]
    copy = mutate(tail, 20_000, 0.05, 0.0, rng)  # substitutions only: positions stay aligned
    differ = np.mean(np.frombuffer(copy, np.uint8) != np.frombuffer(tail[:20_000], np.uint8))
    assert 0.045 < differ < 0.055
    assert len(mutate(tail, 20_000, 0.1, 0.5, rng)) == 20_000


def test_kmer_and_gc_baselines_are_frequencies():
    x = kmer_frequencies([b"AAAAC", b"ACGN"], 4)
    assert x[0].sum() == pytest.approx(1) and x[0, 0] == pytest.approx(0.5)  # AAAA, AAAC
    assert x[1].sum() == 0  # its only 4-mer holds an N
    assert gc_content([b"GGCA", b"NNGA"]).ravel().tolist() == pytest.approx([0.75, 0.5])


def test_sampled_windows_lie_on_the_run_grid_with_their_next_window(two_genomes):
    s = sample_windows(two_genomes, 500, 250, 60, seed=1)
    assert len(s.anchors) == 60 and len(s.seqs) == s.table.height
    starts = s.table["start"].to_numpy()
    assert (starts % 250 == 0).all()
    assert (starts[s.nexts] - starts[s.anchors] == 250).all()
    assert (s.table["genome"].to_numpy()[s.anchors] == "eco").sum() == 30
    g = two_genomes["eco"]
    row = s.table.row(int(s.anchors[0]), named=True)
    if row["genome"] == "eco":
        assert s.seqs[s.anchors[0]] == g.fetch(row["contig"], row["start"], row["end"])


def test_identical_copies_score_one_and_sequence_blind_vectors_score_chance(two_genomes):
    """A method that sees the sequence finds an unmutated copy at top 1; vectors drawn at random,
    blind to the sequence, find neighbours at the chance rate and separate no genomes."""
    rng = np.random.default_rng(0)

    def blind(seqs):
        return rng.normal(size=(len(seqs), 32)).astype(np.float32)

    settings = EvalSettings(windows=200, mutation_rates=(0.0,), bootstrap=200, loci_depth=50,
                            loci_baselines=("canonical 6-mer",))
    results, comparison = evaluate(two_genomes, blind, 500, 250, settings)
    assert estimate(results, "mutated 0% top-1", "4-mer") == 1.0
    searched = results.filter(pl.col("measure") == "genome ARI")["n"][0]
    chance = 10 / (searched - 2)  # each anchor's overlapping windows other than its target are left out
    row = results.filter((pl.col("measure") == "neighbour top-10") & (pl.col("method") == "embeddings")).row(0, named=True)
    assert row["low"] <= chance * 1.05 and row["high"] >= chance * 0.95 and row["estimate"] < 0.15
    assert abs(estimate(results, "genome ARI", "embeddings")) < 0.05
    assert estimate(results, "genome ARI", "4-mer") > 0.5  # E. coli (GC 51%) and C. elegans (35%) differ
    verdicts = dict(comparison.filter(pl.col("baseline") == "4-mer").select("measure", "verdict").iter_rows())
    assert verdicts["neighbour top-10"] == "worse" and verdicts["mutated 0% top-1"] == "worse"
    # the divergence curve: k-mer counts find an unmutated 2-kb query (either strand) and fewer as it diverges;
    # blind vectors find almost none
    six = [estimate(results, f"2-kb query mutated {r}% top-1", "canonical 6-mer") for r in (0, 10, 20, 30)]
    assert six[0] == 1.0 and six[0] >= six[1] >= six[3] and six[3] < six[0]
    assert estimate(results, "2-kb query mutated 0% top-1", "embeddings") < 0.2
    assert results.filter(pl.col("measure") == "2-kb query mutated 0% top-1")["n"][0] == 200
    # ranked as genembed query ranks loci (pieces' hits chained on the whole grid): the same order. Identical
    # copies are all found both ways, though C. elegans IV and X hold inverted repeats as similar as the source:
    # a hit on a repeat is right, as for an aligner
    loci = [estimate(results, f"2-kb query mutated {r}%, loci top-1", "canonical 6-mer") for r in (0, 10, 20, 30)]
    assert loci[0] == 1.0 and loci[0] >= loci[1] >= loci[3] and loci[3] >= six[3]
    assert estimate(results, "2-kb query mutated 0%, loci top-1", "embeddings") < 0.2


def test_evaluate_cli_scores_a_model_and_writes_the_report(tmp_path, ecoli_slice):
    from genembed.encode.tune import TuneConfig, new_encoder

    model = tmp_path / "conv"
    new_encoder(model, TuneConfig(hidden_size=16, layers=1))
    out = tmp_path / "eval"
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "evaluate", "--fasta", str(ecoli_slice[0]),
                           "--model", str(model), "--windows", "100", "--divergence-queries", "60", "--loci-depth", "50",
                           "--out", str(out)],
                          capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "reverse complement top-1" in proc.stdout and "evaluate.html" in proc.stdout
    results = pl.read_csv(out / "evaluate.tsv", separator="\t")
    # genembed's encoder is reverse-complement invariant by construction
    assert estimate(results, "reverse complement top-1", "embeddings") == 1.0
    assert set(results["method"]) == {"embeddings", "4-mer", "canonical 4-mer", "canonical 6-mer", "GC"}
    # strand-canonical counts are strand-invariant too: the fair baselines of a strand-invariant model
    assert estimate(results, "reverse complement top-1", "canonical 4-mer") == 1.0
    assert estimate(results, "reverse complement top-1", "4-mer") < 0.5
    curve = results.filter(pl.col("measure").str.starts_with("2-kb query mutated"))
    assert set(curve["measure"]) == {f"2-kb query mutated {r}%{how} top-1" for r in (0, 10, 20, 30) for how in ("", ", loci")}
    assert "GC" not in set(curve["method"])
    assert "genome ARI" not in set(results["measure"])  # one genome
    html = (out / "evaluate.html").read_text()
    assert "4-mer" in html and "Summary" in html


def test_evaluate_cli_refuses_clashing_genome_names(tmp_path, ecoli_slice, tiny_bert):
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "evaluate", "--fasta", str(ecoli_slice[0]),
                           str(ecoli_slice[0]), "--model", str(tiny_bert), "--out", str(tmp_path / "x")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("genembed: error: genome names must differ")
    assert not (tmp_path / "x").exists()


def test_non_finite_embeddings_are_refused_not_scored(two_genomes):
    from genembed.errors import GenembedError

    def overflowing(seqs):
        x = np.ones((len(seqs), 8), dtype=np.float32)
        x[::7] = np.nan
        return x

    with pytest.raises(GenembedError, match="not finite"):
        evaluate(two_genomes, overflowing, 500, 250, EvalSettings(windows=40, bootstrap=10, loci_windows=0))


def test_a_genome_too_short_for_two_windows_is_skipped_not_fatal(tmp_path, two_genomes):
    (tmp_path / "plasmid.fa").write_text(">p\n" + "ACGTTGCA" * 50 + "\n")  # 400 bp: no 500-bp window
    prepare_fasta(tmp_path / "plasmid.fa", tmp_path / "plasmid.fa.gz")
    genomes = {"eco": two_genomes["eco"], "plasmid": Genome(tmp_path / "plasmid.fa.gz")}
    results, _ = evaluate(genomes, kmer_frequencies, 500, 250, EvalSettings(windows=40, bootstrap=10, loci_windows=0))
    assert "genome ARI" not in set(results["measure"])  # one genome left
    assert results.filter(pl.col("measure") == "neighbour top-1")["n"][0] == 20


def test_a_run_is_evaluated_on_its_stored_vectors_with_the_same_results(tmp_path, ecoli_slice, tiny_bert, caplog):
    """The sampled windows lie on the run's grid: their stored vectors are searched (only the queries
    are embedded), and the scores equal those of embedding every window again."""
    import logging

    from helpers import embed_genome, kmer_plan

    inputs = embed_genome("eco", ecoli_slice[0], tmp_path, tiny_bert, size=500, shard_size=150)
    assert len(inputs.shards) > 1
    embed = sequence_embedder(kmer_plan(tiny_bert, size=500))
    settings = EvalSettings(windows=60, mutation_rates=(0.05,), bootstrap=50, divergence_queries=50, loci_depth=50)
    genomes = {"eco": Genome(inputs.fasta)}
    with caplog.at_level(logging.INFO, logger="genembed.reports.evaluate"):
        from_shards, _ = evaluate(genomes, embed, 500, 500, settings, stored=[inputs])
    again, _ = evaluate(genomes, embed, 500, 500, settings)
    genomes["eco"].close()
    read = re.search(r"(\d+) sampled windows read from the run's shards, 0 embedded", caplog.text)
    assert read and int(read.group(1)) > 60  # the anchors and their next windows
    assert from_shards.equals(again)


def test_divergence_query_pieces_from_one_pass_along_the_queries_equal_embedding_each_piece(two_genomes):
    """The divergence curve's overlapping query pieces are embedded in one pass along the queries laid
    end to end (the scan recomputes each piece's edges), which gives each piece's own vector."""
    from dataclasses import replace

    from genembed.reports.evaluate import divergence_pieces, divergence_setup
    from helpers import default_plan

    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32"))
    scan = Scanner.for_plan(plan)
    embed = sequence_embedder(plan, scan)
    assert scan.reach is not None  # the bundled model's states are local: the pass applies
    settings = EvalSettings(windows=20, divergence_queries=5, divergence_rates=(0.0, 0.3))
    div = divergence_setup(two_genomes, sample_windows(two_genomes, 500, 250, 20), 500, 250, settings)
    alone, one_pass = divergence_pieces(div, embed, 500, 250), divergence_pieces(div, embed, 500, 250, scan)
    for rate in (0.0, 0.3):
        assert alone[rate][0] == one_pass[rate][0] and len(alone[rate][0]) > 5 * 6
        np.testing.assert_allclose(one_pass[rate][1], alone[rate][1], atol=3e-3)


def test_evaluate_measures_round_trip_and_a_foreign_table_is_refused_naming_it(tmp_path):
    from genembed.errors import GenembedError
    from genembed.reports.evaluate import COMPARISON_SCHEMA, RESULT_SCHEMA, read_measures, write_measures

    results = pl.DataFrame([("neighbour top-1", "embeddings", 0.5, 0.4, 0.6, 10)], schema=RESULT_SCHEMA, orient="row")
    comparison = pl.DataFrame([("neighbour top-1", "4-mer", 0.1, 0.0, 0.2, "better")], schema=COMPARISON_SCHEMA, orient="row")
    write_measures(results, comparison, tmp_path / "m.parquet", tmp_path / "c.parquet")
    got = read_measures(tmp_path / "m.parquet", tmp_path / "c.parquet")
    assert got[0].equals(results) and got[1].equals(comparison)
    pl.DataFrame({"x": [1]}).write_parquet(tmp_path / "other.parquet")
    with pytest.raises(GenembedError, match="other.parquet: not evaluate's measures"):
        read_measures(tmp_path / "other.parquet", tmp_path / "c.parquet")
