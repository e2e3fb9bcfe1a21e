"""Every published DNA-model family, as a tiny real model saved the way it ships, through the real
loading path (describe, plan, tokenize, embed): DNABERT, Nucleotide Transformer v1 and v2,
BPE models (GROVER, and DNABERT-2 with its own code returning tuples) and HyenaDNA-like causal models without an attention mask."""

from __future__ import annotations

import logging
from pathlib import Path

import model_zoo
import numpy as np
import pytest
import torch

from genembed.encode.embed import EmbedSettings, Embedder, token_batches
from genembed.errors import GenembedError
from genembed.data.genome import prepare_fasta
from genembed.encode.models import ModelSpec, load_tokenizer
from genembed.data.layout import ShardFiles
from genembed.run.pipeline import embed_stage
from genembed.data.windows import WindowPlan
from genembed.encode.plan import RunPlan
from genembed.data.store import read_shard
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer, reverse_complement, tokenize_shard
from genembed.data.windows import write_shard_windows, WindowSpec

# family: (tokenizer the config would name, ships its own code)
FAMILIES = {
    "dnabert": (TokenizerSpec("kmer", 6, True), False),
    "nt_v1": (TokenizerSpec("kmer", 6, False), False),
    "nt_v2": (TokenizerSpec("kmer", 6, False), True),
    "bpe": (TokenizerSpec("hf"), False),
    "dnabert2": (TokenizerSpec("hf"), True),
    "hyena": (TokenizerSpec("hf"), True),
}


@pytest.fixture(scope="module")
def zoo(tmp_path_factory, ecoli_sequence) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("zoo")
    return {
        "dnabert": model_zoo.dnabert(d / "dnabert"),
        "nt_v1": model_zoo.nucleotide_transformer_v1(d / "nt_v1"),
        "nt_v2": model_zoo.masked_lm_custom_code(d / "nt_v2"),
        "bpe": model_zoo.bpe_bert(d / "bpe", ecoli_sequence),
        "dnabert2": model_zoo.dnabert2_like(d / "dnabert2", ecoli_sequence),
        "hyena": model_zoo.hyena_like(d / "hyena"),
    }


def spec_of(zoo, family: str) -> ModelSpec:
    return ModelSpec(str(zoo[family]), trust_remote_code=FAMILIES[family][1])


def embedder(zoo, family: str, **settings) -> Embedder:
    return Embedder(spec_of(zoo, family), EmbedSettings(**{"precision": "fp32", **settings}))


@pytest.fixture(scope="module")
def genome(tmp_path_factory, ecoli_sequence) -> Path:
    """24 kb of E. coli with short N runs in a few windows (so k-mer token counts vary)."""
    seq = bytearray(ecoli_sequence[50_000:74_000])
    for at in (1_003, 5_210, 9_999, 17_301):
        seq[at : at + 3] = b"NNN"
    d = tmp_path_factory.mktemp("genome")
    (d / "g.fa").write_bytes(b">chr1\n" + bytes(seq) + b"\n")
    prepare_fasta(d / "g.fa", d / "g.fa.gz")
    return d / "g.fa.gz"


def hf_ids(tok, family: str, seq: bytes) -> list[int]:
    """What the model's own tokenizer gives for a window (DNABERT reads space-separated k-mers)."""
    text = seq.decode()
    if family == "dnabert":
        text = " ".join(text[i : i + 6] for i in range(len(text) - 5))
    return tok(text)["input_ids"]


def plain_forward(model, tok, ids, pooling: str = "mean") -> np.ndarray:
    """One window alone, no padding, pooled over its non-special tokens."""
    with torch.no_grad():
        out = model(input_ids=torch.tensor([ids]))
    hidden = (out[0] if isinstance(out, tuple) else out.last_hidden_state)[0]
    if pooling == "cls":
        return hidden[0].numpy()
    special = set(tok.all_special_ids) - {tok.unk_token_id}
    keep = torch.tensor([i not in special for i in ids])
    return (hidden[keep].mean(0) if pooling == "mean" else hidden[keep].amax(0)).numpy()


@pytest.mark.parametrize("family", FAMILIES)
def test_each_family_is_planned_tokenized_and_embedded_like_a_plain_forward_pass(tmp_path, zoo, genome, family):
    tok_spec, _ = FAMILIES[family]
    plan = RunPlan.make(spec_of(zoo, family), tok_spec, {"size": 400, "stride": 400, "shard_size": 100})
    emb = embedder(zoo, family, token_budget=1500)
    tokenizer = make_tokenizer(tok_spec, emb.tokenizer)
    n = write_shard_windows("g", genome, plan.windows.spec(), 0, tmp_path / "w.parquet")
    tokenize_shard(tmp_path / "w.parquet", genome, tokenizer, plan.max_tokens, tmp_path / "t.npy", tmp_path / "o.npy")
    embed_stage(plan, [ShardFiles(tmp_path / "w.parquet", tmp_path / "t.npy", tmp_path / "o.npy", tmp_path / "e.h5")], emb)
    shard = read_shard(tmp_path / "e.h5")
    assert n == 60 and shard.embeddings.shape == (60, 32) and shard.embeddings.dtype == np.float16
    assert shard.attrs["tokenizer"] == tok_spec.describe() and shard.attrs["window_size"] == 400

    rows = np.split(np.load(tmp_path / "t.npy"), np.load(tmp_path / "o.npy")[1:-1])
    seq = genome_seq(genome)
    for i in (0, 2, 24, 59):  # window 2 holds an N run
        window = seq[i * 400 : i * 400 + 400]
        assert rows[i].tolist() == hf_ids(emb.tokenizer, family, window)
        np.testing.assert_allclose(shard.embeddings[i], plain_forward(emb.model, emb.tokenizer, rows[i].tolist()),
                                   atol=2e-3, rtol=2e-3)
    if family == "nt_v1":  # N and leftover bases become single-base tokens: counts vary
        assert len({len(r) for r in rows}) > 1


def genome_seq(path: Path) -> bytes:
    from genembed.data.genome import Genome

    g = Genome(path)
    try:
        return g.fetch("chr1", 0, g.contigs["chr1"])
    finally:
        g.close()


@pytest.mark.parametrize("family, expected", [("dnabert", 515), ("nt_v1", 5988), ("nt_v2", 3060), ("hyena", 1025),
                                              ("bpe", None), ("dnabert2", None)])
def test_window_size_auto_is_the_longest_window_the_model_takes(zoo, ecoli_sequence, family, expected):
    tok_spec, _ = FAMILIES[family]
    plan = RunPlan.make(spec_of(zoo, family), tok_spec, {"size": "auto", "stride": "auto"})
    size, limit = plan.windows.size, plan.max_tokens
    assert plan.windows.stride == size // 2
    if expected:
        assert size == expected
    tokenizer = make_tokenizer(tok_spec, load_tokenizer(zoo[family], spec_of(zoo, family)))
    assert len(tokenizer.encode_batch([ecoli_sequence[:size]])[0]) <= limit
    if FAMILIES[family][0].kind == "kmer" or family == "hyena":  # one more base needs one more token
        assert len(tokenizer.encode_batch([ecoli_sequence[: size + 1]])[0]) > limit


@pytest.mark.parametrize("family", ["dnabert", "bpe", "hyena"])
def test_windows_the_model_would_truncate_are_refused_naming_both_numbers(zoo, family):
    tok_spec, _ = FAMILIES[family]
    size = RunPlan.make(spec_of(zoo, family), tok_spec, {"size": "auto"}).windows.size
    with pytest.raises(GenembedError, match=rf"windows.size {size + 1} bp does not fit .* at most \d+ tokens, which hold"
                                            rf" {size} bp"):
        RunPlan.make(spec_of(zoo, family), tok_spec, {"size": size + 1, "stride": 100})


@pytest.mark.parametrize("family", ["nt_v2", "dnabert2", "hyena"])
def test_custom_code_is_refused_unless_the_config_trusts_it(zoo, family):
    with pytest.raises(GenembedError, match="ships its own code .*set model.trust_remote_code: true"):
        Embedder(ModelSpec(str(zoo[family])), EmbedSettings())


def rows_of(zoo, family: str, seqs: list[bytes]) -> list[np.ndarray]:
    tok_spec, _ = FAMILIES[family]
    return make_tokenizer(tok_spec, load_tokenizer(zoo[family], spec_of(zoo, family))).encode_batch(seqs)


@pytest.mark.parametrize("pooling", ["mean", "max", "cls"])
def test_every_pooling_matches_the_plain_forward_pass(zoo, ecoli_sequence, pooling):
    seqs = [ecoli_sequence[i * 997 : i * 997 + 300 + 11 * i] for i in range(10)]
    emb = embedder(zoo, "nt_v1", pooling=pooling, token_budget=200)
    rows = rows_of(zoo, "nt_v1", seqs)
    got = emb.embed_rows(rows)
    for row, vec in zip(rows, got):
        np.testing.assert_allclose(vec, plain_forward(emb.model, emb.tokenizer, row.tolist(), pooling), atol=2e-5, rtol=1e-4)


def test_a_model_returning_only_its_last_layer_refuses_other_layers_clearly(zoo, ecoli_sequence):
    rows = rows_of(zoo, "dnabert2", [ecoli_sequence[:400]])
    with pytest.raises(GenembedError, match="no hidden states per layer; use embed.layer: -1"):
        embedder(zoo, "dnabert2", layer=-2).embed_rows(rows)


def test_cls_pooling_is_refused_for_a_tokenizer_without_a_start_token(zoo):
    with pytest.raises(GenembedError, match="pooling 'cls' needs a start token"):
        embedder(zoo, "hyena", pooling="cls")


@pytest.mark.parametrize("family", ["nt_v1", "bpe", "hyena"])
def test_strands_average_embeds_a_window_and_its_reverse_complement_alike(tmp_path, zoo, ecoli_sequence, family):
    seq = ecoli_sequence[120_000:124_000]
    (tmp_path / "g.fa").write_bytes(b">fwd\n" + seq + b"\n>rev\n" + reverse_complement(seq) + b"\n")
    prepare_fasta(tmp_path / "g.fa", tmp_path / "g.fa.gz")
    spec = WindowSpec(400, 400, shard_size=100)
    write_shard_windows("g", tmp_path / "g.fa.gz", spec, 0, tmp_path / "w.parquet")
    tok_spec, _ = FAMILIES[family]
    vectors = {}
    for strands in ("forward", "average"):
        emb = embedder(zoo, family, strands=strands)
        tokenize_shard(tmp_path / "w.parquet", tmp_path / "g.fa.gz", make_tokenizer(tok_spec, emb.tokenizer), 2000,
                       tmp_path / "t.npy", tmp_path / "o.npy", strands)
        plan = RunPlan("m", str(zoo[family]), "f", 2000, tok_spec, WindowPlan(400, 400))
        files = ShardFiles(tmp_path / "w.parquet", tmp_path / "t.npy", tmp_path / "o.npy", tmp_path / f"{strands}.h5")
        embed_stage(plan, [files], emb)
        shard = read_shard(tmp_path / f"{strands}.h5")
        assert shard.attrs["strands"] == strands and len(shard.window_id) == 20
        vectors[strands] = shard.embeddings.astype(np.float32)
    fwd, rev = vectors["average"][:10], vectors["average"][10:][::-1]  # window i of fwd is window 9 - i of rev
    np.testing.assert_allclose(fwd, rev, atol=2e-3, rtol=2e-3)
    assert not np.allclose(vectors["forward"][:10], vectors["forward"][10:][::-1], atol=2e-2)


def test_bpe_windows_of_ragged_token_counts_embed_the_same_in_any_batch(zoo, ecoli_sequence):
    seqs = [ecoli_sequence[i * 1500 : i * 1500 + 400] for i in range(40)]
    rows = rows_of(zoo, "bpe", seqs)
    assert len({len(r) for r in rows}) > 5  # BPE: variable tokens per window of equal bp
    emb = embedder(zoo, "bpe", token_budget=150)
    small = emb.embed_rows(rows)
    large = embedder(zoo, "bpe", token_budget=100_000).embed_rows(rows)
    order = np.random.default_rng(0).permutation(len(rows))
    shuffled = emb.embed_rows([rows[i] for i in order])
    alone = np.stack([emb.embed_rows([r])[0] for r in rows[:5]])
    np.testing.assert_allclose(small, large, atol=2e-5)
    np.testing.assert_allclose(shuffled, large[order], atol=2e-5)
    np.testing.assert_allclose(alone, large[:5], atol=2e-5)


def test_a_model_without_attention_mask_never_sees_padding(zoo, ecoli_sequence):
    seqs = [ecoli_sequence[i * 500 : i * 500 + 200 + 3 * (i % 4)] for i in range(16)]  # 4 different lengths
    emb = embedder(zoo, "hyena", token_budget=10_000)
    assert not emb.takes_mask
    rows = rows_of(zoo, "hyena", seqs)
    lengths = np.array([len(r) for r in rows])
    for batch in token_batches(lengths, 10_000, equal_lengths=True):
        assert len(set(lengths[batch])) == 1
    got = emb.embed_rows(rows)
    for row, vec in zip(rows, got):
        np.testing.assert_allclose(vec, plain_forward(emb.model, emb.tokenizer, row.tolist()), atol=2e-5, rtol=1e-4)
    # what a padding batcher would get: the padded row's pooled vector differs from the window's own
    short, pad = rows[0].tolist(), emb.tokenizer.pad_token_id
    padded = plain_forward(emb.model, emb.tokenizer, [pad] * 3 + short)
    assert not np.allclose(padded, got[0], atol=1e-3)


@pytest.mark.parametrize("family", FAMILIES)
def test_bf16_embeddings_agree_with_fp32(zoo, ecoli_sequence, family):
    seqs = [ecoli_sequence[i * 2000 : i * 2000 + 400] for i in range(24)]
    rows = rows_of(zoo, family, seqs)
    fp32 = embedder(zoo, family).embed_rows(rows)
    bf16_embedder = embedder(zoo, family, precision="bf16")
    assert bf16_embedder.precision == "bfloat16"
    bf16 = bf16_embedder.embed_rows(rows)
    cosine = (fp32 * bf16).sum(1) / (np.linalg.norm(fp32, axis=1) * np.linalg.norm(bf16, axis=1))
    assert cosine.min() >= 0.999, cosine.min()


def test_a_model_with_twice_its_hidden_size_of_channels_is_stored_at_its_output_width(tmp_path, ecoli_sequence):
    folder = model_zoo.hyena_like(tmp_path / "caduceus-ps", both_strands=True)  # d_model 32, 64 channels out
    emb = Embedder(ModelSpec(str(folder), trust_remote_code=True), EmbedSettings(precision="fp32"))
    assert emb.hidden_size == 64
    rows = make_tokenizer(TokenizerSpec("hf"), emb.tokenizer).encode_batch([ecoli_sequence[:300], ecoli_sequence[500:800]])
    vectors = emb.embed_rows(rows)
    assert vectors.shape == (2, 64) and not np.allclose(vectors[:, :32], vectors[:, 32:])


def test_bert_runs_with_sdpa_attention(zoo):
    assert embedder(zoo, "dnabert").model.config._attn_implementation == "sdpa"


def test_out_of_memory_halves_the_token_budget_and_retries(tmp_path, ecoli_sequence, caplog):
    folder = model_zoo.memory_limited(tmp_path / "limited", max_batch_tokens=600)
    spec = ModelSpec(str(folder), trust_remote_code=True)
    tok = make_tokenizer(TokenizerSpec("kmer", 6, False), load_tokenizer(folder, spec))
    rows = tok.encode_batch([ecoli_sequence[i * 800 : i * 800 + 500] for i in range(120)])  # 87 tokens each
    emb = Embedder(spec, EmbedSettings(token_budget=4096, precision="fp32"))
    with caplog.at_level(logging.WARNING, logger="genembed.encode.embed"):
        got = emb.embed_rows(rows)
    # three halvings in the first batch (4089 -> 2044 -> 1000 -> 478 tokens); later batches are split at once
    assert caplog.text.count("token budget halved") == 3 and emb.budget == 478
    fits = Embedder(spec, EmbedSettings(token_budget=500, precision="fp32")).embed_rows(rows)
    np.testing.assert_allclose(got, fits, atol=2e-5)
    tight = model_zoo.memory_limited(tmp_path / "tight", max_batch_tokens=50)
    with pytest.raises(GenembedError, match="out of memory on a single window of 87 tokens"):
        Embedder(ModelSpec(str(tight), trust_remote_code=True), EmbedSettings(precision="fp32")).embed_rows(rows[:3])


def test_a_window_a_little_shorter_than_the_longest_can_still_be_too_long(zoo):
    """Non-overlapping 6-mers: 3,060 bp are 510 tokens, but 3,059 bp are 509 6-mers plus 5 single
    bases, 514 tokens: refused, though shorter than the longest window."""
    tok_spec, _ = FAMILIES["nt_v2"]
    assert RunPlan.make(spec_of(zoo, "nt_v2"), tok_spec, {"size": 3060}).windows.size == 3060
    with pytest.raises(GenembedError, match="windows.size 3059 bp does not fit"):
        RunPlan.make(spec_of(zoo, "nt_v2"), tok_spec, {"size": 3059, "stride": 1000})
