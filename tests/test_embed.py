import platform
import sys

import h5py
import numpy as np
import polars as pl
import pytest
import torch

from genembed.encode.embed import EmbedSettings, Embedder, token_batches
from genembed.errors import GenembedError
from genembed.data.layout import ShardFiles
from genembed.run.pipeline import embed_stage
from genembed.data.windows import WindowPlan
from genembed.encode.plan import RunPlan
from genembed.encode.tokenize import TokenizerSpec
from genembed.encode.models import ModelSpec
from genembed.data.store import read_shard
from genembed.encode.tokenize import KmerTokenizer, write_tokens


@pytest.fixture(scope="module")
def rows(tiny_bert, ecoli_sequence):
    from genembed.encode.models import load_tokenizer

    tok = KmerTokenizer.from_hf(load_tokenizer(tiny_bert, ModelSpec(str(tiny_bert))), 6, False)
    seqs = [ecoli_sequence[i * 700 : i * 700 + 200 + 37 * i] for i in range(12)]  # ragged lengths
    seqs[5] = seqs[5][:50] + b"NNN" + seqs[5][53:]
    return tok.encode_batch(seqs)


def reference(model, ids: np.ndarray, layer: int = -1, pooling: str = "mean") -> np.ndarray:
    """One window alone, no padding: the plain transformers forward pass."""
    with torch.no_grad():
        out = model(input_ids=torch.from_numpy(ids.astype(np.int64))[None], output_hidden_states=True)
    hidden = out.hidden_states[layer][0]
    return (hidden[0] if pooling == "cls" else hidden[1:-1].mean(0)).numpy()  # drop [CLS] and [SEP]


@pytest.mark.parametrize("pooling, layer", [("mean", -1), ("mean", -2), ("cls", -1)])
def test_pooling_matches_a_plain_forward_pass_per_window(tiny_bert, rows, pooling, layer):
    emb = Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(pooling=pooling, layer=layer, token_budget=2000, precision="fp32"))
    got = emb.embed_rows(rows)
    for row, vec in zip(rows, got):
        np.testing.assert_allclose(vec, reference(emb.model, row, layer, pooling), atol=2e-5, rtol=1e-4)


def test_embedding_does_not_depend_on_batch_company_or_budget(tiny_bert, rows):
    small = Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(token_budget=150, precision="fp32")).embed_rows(rows)
    large = Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(token_budget=100_000, precision="fp32")).embed_rows(rows)
    alone = np.stack([Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(precision="fp32")).embed_rows([r])[0] for r in rows[:3]])
    np.testing.assert_allclose(small, large, atol=2e-5)
    np.testing.assert_allclose(alone, large[:3], atol=2e-5)


def test_token_batches_respect_the_budget_and_cover_every_row():
    lengths = np.array([10, 300, 50, 300, 120, 7, 90])
    batches = list(token_batches(lengths, 600))
    assert sorted(np.concatenate(batches).tolist()) == list(range(7))
    for b in batches:
        assert len(b) * lengths[b].max() <= 600 or len(b) == 1
    assert lengths[batches[0][0]] == 300  # longest first


def test_unknown_pooling_is_refused():
    with pytest.raises(GenembedError, match="pooling"):
        EmbedSettings.from_config({"pooling": "median"})


def test_embed_stage_writes_a_self_describing_float16_shard(tmp_path, tiny_bert, rows):
    ids = np.arange(len(rows), dtype=np.int64) + (7 << 32)
    pl.DataFrame({"window_id": ids, "contig": "c", "start": np.arange(len(rows)) * 1000}).write_parquet(tmp_path / "w.parquet")
    write_tokens(tmp_path / "t.npy", tmp_path / "o.npy", rows)
    emb = Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(precision="fp32"))
    plan = RunPlan("tiny", str(tiny_bert), "abc", 512, TokenizerSpec("kmer", 6), WindowPlan(1000, 500))
    n = embed_stage(plan, [ShardFiles(tmp_path / "w.parquet", tmp_path / "t.npy", tmp_path / "o.npy", tmp_path / "e.h5")], emb)
    shard = read_shard(tmp_path / "e.h5")
    assert n == len(rows)
    assert shard.embeddings.dtype == np.float16 and shard.embeddings.shape == (len(rows), 32)
    np.testing.assert_array_equal(shard.window_id, ids)
    np.testing.assert_allclose(shard.embeddings, emb.embed_rows(rows), atol=2e-3, rtol=2e-3)
    a = shard.attrs
    assert (a["model"], a["model_fingerprint"], a["pooling"], a["layer"], a["window_size"], a["window_stride"]) == \
        ("tiny", "abc", "mean", -1, 1000, 500)
    assert a["tokenizer"] == "kmer(k=6,non-overlapping)" and a["schema_version"] == 1 and a["precision"] == "float32"
    with h5py.File(tmp_path / "e.h5") as f:
        assert f.attrs["encoding-type"] == "genembed-embeddings"
        assert f["embeddings"].chunks is not None
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


def test_token_rows_must_match_the_windows(tmp_path, tiny_bert, rows):
    pl.DataFrame({"window_id": np.arange(3), "contig": "c", "start": [0, 1, 2]}).write_parquet(tmp_path / "w.parquet")
    write_tokens(tmp_path / "t.npy", tmp_path / "o.npy", rows)
    emb = Embedder(ModelSpec(str(tiny_bert)), EmbedSettings())
    with pytest.raises(GenembedError, match="12 token rows but 3 windows"):
        plan = RunPlan("x", str(tiny_bert), "y", 512, TokenizerSpec("hf"), WindowPlan(1, 1))
        embed_stage(plan, [ShardFiles(tmp_path / "w.parquet", tmp_path / "t.npy", tmp_path / "o.npy", tmp_path / "e.h5")], emb)
    assert not (tmp_path / "e.h5").exists()


def test_layer_out_of_range_is_refused_naming_the_model_depth(tiny_bert):
    with pytest.raises(GenembedError, match="embed.layer 5 is out of range for a model with 2 layers"):
        Embedder(ModelSpec(str(tiny_bert)), EmbedSettings(layer=5))


def test_fp16_is_refused_on_a_cpu_and_auto_picks_bf16_where_the_cpu_has_it(tiny_bert):
    from genembed.encode.device import native_bf16, pick_dtype

    with pytest.raises(GenembedError, match="fp16 runs on CUDA only"):
        pick_dtype("fp16", "cpu")
    assert pick_dtype("auto", "cpu") == (torch.bfloat16 if native_bf16("cpu") else torch.float32)
    assert pick_dtype("fp32", "cpu") == torch.float32


@pytest.mark.skipif(not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc", reason="glibc only")
def test_embedding_processes_keep_freed_memory_for_the_next_batch():
    """glibc hands freed blocks back to the system unless told not to; every batch would then fault
    its pages in again (a third of a genembed embed's time went to the kernel)."""
    from genembed.encode.memory import keep_freed_memory

    assert keep_freed_memory() is True
