"""A k-mer branch fused beside a trained genembed-conv encoder (`genembed tune --kmer-channels`): the fused
model's pooled k-mer block is the window's k-mer frequencies times the trained table, both blocks carry
their shares, the model stays strand-invariant, and the pipeline embeds with it like any model."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from genembed.embed import EmbedSettings, Embedder
from genembed.errors import GenembedError
from genembed.models import ModelSpec, load_model, load_tokenizer
from genembed.tokenize import TokenizerSpec, make_tokenizer, reverse_complement
from helpers import REPO

BASE = REPO / "resources/models/genembed-conv"


@pytest.fixture(scope="module")
def fused(tmp_path_factory, prepared_slice):
    out = tmp_path_factory.mktemp("fused") / "model"
    proc = subprocess.run([sys.executable, "-m", "genembed.cli", "tune", "--model", str(BASE), "--fasta",
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
    from genembed.kmerbranch import canonical_columns
    from genembed.windows import canonical_kmer_frequencies

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
    from genembed.kmerbranch import fuse

    net, tok = load_model(fused, ModelSpec(str(fused))), load_tokenizer(fused, ModelSpec(str(fused)))
    with pytest.raises(GenembedError, match="already has a k-mer branch"):
        fuse(net, tok, np.zeros((2080, 4)), 6, 0.5, [b"ACGT" * 125])
    base = load_model(BASE, ModelSpec(str(BASE)))
    with pytest.raises(GenembedError, match="between 0 and 1"):
        fuse(base, tok, np.zeros((2080, 4)), 6, 1.0, [b"ACGT" * 125])
