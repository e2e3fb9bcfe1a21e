"""A k-mer branch fused beside a trained genembed-conv encoder (`genembed tune --kmer-channels`): the fused
model's pooled k-mer block is the window's k-mer frequencies times the trained table, both blocks carry
their shares, the model stays strand-invariant, and the pipeline embeds with it like any model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from genembed.encode.embed import EmbedSettings, Embedder
from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec, load_model, load_tokenizer
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer, reverse_complement
from helpers import REPO
from genembed.encode.scan import sequence_embedder

BASE = REPO / "resources/models/genembed-conv"


@pytest.fixture(scope="module")
def fused(tmp_path_factory, prepared_slice):
    out = tmp_path_factory.mktemp("fused") / "model"
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "tune", "--model", str(BASE), "--fasta",
                           str(prepared_slice), "--tokenizer", "kmer", "--k", "1", "--out", str(out), "--kmer-size", "6",
                           "--kmer-channels", "16", "--kmer-share", "0.6", "--steps", "5", "--batch-size", "16",
                           "--max-shift", "100", "--max-mutation", "0.3", "--mutate-one"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    return out


def _embed(folder, seqs):
    embedder = Embedder(ModelSpec(str(folder)), EmbedSettings(precision="fp32"))
    tok = make_tokenizer(TokenizerSpec("kmer", 1), embedder.tokenizer)
    return embedder.embed_rows(tok.encode_batch(seqs))


def test_the_fused_kmer_block_is_the_windows_kmer_frequencies_times_the_table(fused, ecoli_sequence):
    from genembed.encode.kmerbranch import canonical_columns
    from genembed.data.windows import canonical_kmer_frequencies

    seqs = [ecoli_sequence[i : i + 500] for i in range(0, 20_000, 2_000)]
    x = _embed(fused, seqs)
    assert x.shape == (10, 128 + 16)
    net = load_model(fused, ModelSpec(str(fused)))
    rows = net.kmer.weight.detach().numpy()[:-1]
    cols = canonical_columns(6)
    table = np.zeros((cols.max() + 1, rows.shape[1]))
    table[cols] = rows  # both k-mers of a pair hold the same row
    f = canonical_kmer_frequencies(seqs, 6)
    expected = f @ table * (495 / 500)  # a 500-bp window holds 495 6-mers; the pooled mean is over 500 positions
    np.testing.assert_allclose(x[:, 128:], expected, rtol=1e-3, atol=1e-5)
    # the convolutional block is the base model's, scaled
    base = _embed(BASE, seqs)
    np.testing.assert_allclose(x[:, :128], base * net.config.hidden_scale, rtol=1e-3, atol=1e-5)


def test_the_fused_blocks_carry_their_shares_and_the_model_stays_strand_invariant(fused, ecoli_sequence):
    seqs = [ecoli_sequence[i : i + 500] for i in range(0, 100_000, 1_000)]
    x = _embed(fused, seqs)
    share = np.median((x[:, 128:] ** 2).sum(1) / (x**2).sum(1))
    assert 0.5 < share < 0.7  # 0.6 of the squared length, by median norms set on the training genome
    rc = _embed(fused, [reverse_complement(s) for s in seqs[:10]])
    np.testing.assert_allclose(rc, x[:10], rtol=1e-4, atol=1e-5)
    card = (fused / "README.md").read_text()
    assert "fused k-mer branch" in card and "60%" in card


def test_a_kmer_branch_is_fused_only_into_a_genembed_conv_encoder_without_one(fused):
    from genembed.encode.kmerbranch import fuse

    net, tok = load_model(fused, ModelSpec(str(fused))), load_tokenizer(fused, ModelSpec(str(fused)))
    with pytest.raises(GenembedError, match="already has a k-mer branch"):
        fuse(net, tok, np.zeros((2080, 4)), 6, 0.5, [b"ACGT" * 125])
    base = load_model(BASE, ModelSpec(str(BASE)))
    with pytest.raises(GenembedError, match="between 0 and 1"):
        fuse(base, tok, np.zeros((2080, 4)), 6, 1.0, [b"ACGT" * 125])


def test_the_bundled_kmer_model_finds_copies_diverged_20_and_30_percent_on_chromosomes_it_never_saw(tmp_path):
    """A regression check of the shipped genembed-conv-kmer (held out from its training: C. elegans IV,
    V, X): 2-kb queries mutated 20% and 30% find their source by the embedding alone more often than the
    default does on the same set (on the full held-out set, benchmarks/quality.py: 0.985 and 0.47 against
    0.895 and 0.30), and it stays small."""
    import gzip

    from genembed.reports.evaluate import EvalSettings, evaluate
    from genembed.data.genome import Genome, prepare_fasta
    from genembed.encode.plan import RunPlan

    folder = REPO / "resources/models/genembed-conv-kmer"
    assert sum(p.stat().st_size for p in folder.iterdir()) < 20e6
    plain, contig = tmp_path / "held-out.fa", None
    with gzip.open(REPO / "resources/example/C.elegans.fa.gz", "rt") as fh, open(plain, "w") as out:
        for line in fh:
            contig = line[1:].split()[0] if line.startswith(">") else contig
            if contig in ("IV", "V", "X"):
                out.write(line)
    prepare_fasta(plain, tmp_path / "held-out.fa.gz")
    embed = sequence_embedder(RunPlan.make(ModelSpec(str(folder)), TokenizerSpec("kmer", 1), {"size": 500, "stride": 250}))
    g = Genome(tmp_path / "held-out.fa.gz")
    results, _ = evaluate({"ce": g}, embed, 500, 250, EvalSettings(
        windows=300, mutation_rates=(0.10,), divergence_queries=60, divergence_rates=(0.2, 0.3), bootstrap=50, loci_windows=0))
    g.close()
    got = {m: v for m, meth, v in results.select("measure", "method", "estimate").iter_rows() if meth == "embeddings"}
    assert got["reverse complement top-1"] == 1.0
    assert got["2-kb query mutated 20% top-1"] >= 0.95  # 0.967 when shipped; the default 0.933 on this set
    assert got["2-kb query mutated 30% top-1"] >= 0.65  # 0.733 when shipped; the default 0.55


def test_a_projection_branch_is_the_idf_weighted_random_table_and_needs_no_training(tmp_path, prepared_slice,
                                                                                      ecoli_sequence):
    """`tune --kmer-projection` (how the default genembed-conv-6mer was made): the table is a seeded
    Gaussian projection with each k-mer's row weighted by its training frequency ** -0.5, so common
    k-mers weigh less than rare ones; the same seed gives the same table."""
    from genembed.encode.kmerbranch import IDF_POWER, canonical_columns, projection_table
    from genembed.data.windows import canonical_kmer_frequencies

    out = tmp_path / "m"
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "tune", "--model", str(BASE), "--fasta",
                           str(prepared_slice), "--tokenizer", "kmer", "--k", "1", "--out", str(out),
                           "--kmer-size", "4", "--kmer-channels", "8", "--kmer-projection", "--max-shift", "100"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "4-mer projection branch" in proc.stdout and "IDF-like weight" in (out / "README.md").read_text()
    assert load_model(out, ModelSpec(str(out))).config.kmer_channels == 8
    # the weights: rows of rare k-mers are longer, by (frequency ratio) ** -IDF_POWER
    seqs = [ecoli_sequence[i : i + 500] for i in range(0, 200_000, 500)]
    table = projection_table(seqs, 4, 4096, seed=0)
    np.testing.assert_array_equal(table, projection_table(seqs, 4, 4096, seed=0))
    p = canonical_kmer_frequencies(seqs, 4).mean(0)
    norms = np.linalg.norm(table, axis=1)
    rare, common = p.argmin(), p.argmax()
    assert norms[rare] / norms[common] == pytest.approx((p[common] / p[rare]) ** IDF_POWER, rel=0.15)
    assert len(table) == canonical_columns(4).max() + 1


def test_a_projection_needs_a_branch_width(tmp_path, prepared_slice):
    proc = subprocess.run([sys.executable, "-m", "genembed.run.cli", "tune", "--model", str(BASE), "--fasta",
                           str(prepared_slice), "--out", str(tmp_path / "m"), "--kmer-size", "6", "--kmer-projection"],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode != 0 and "--kmer-channels" in proc.stderr and not (tmp_path / "m").exists()
