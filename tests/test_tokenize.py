import numpy as np
import pytest

from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec, load_tokenizer
from genembed.encode.tokenize import (HFTokenizer, KmerTokenizer, TokenizerSpec, check_lengths, make_tokenizer,
                               read_tokens, write_tokens)


def dnabert_reference(seq: str, k: int, vocab: dict[str, int]) -> list[int]:
    """DNABERT's published recipe: space-separated overlapping k-mers, then a vocabulary lookup."""
    kmers = [seq[i : i + k] for i in range(len(seq) - k + 1)]
    return [vocab["[CLS]"]] + [vocab.get(km, vocab["[UNK]"]) for km in kmers] + [vocab["[SEP]"]]


@pytest.fixture(scope="module")
def hf_tokenizer(tiny_bert):
    return load_tokenizer(tiny_bert, ModelSpec(str(tiny_bert)))


def test_vectorised_kmers_match_the_models_own_tokenizer_on_real_sequence(hf_tokenizer, ecoli_sequence):
    seqs = [ecoli_sequence[i : i + 1000] for i in range(0, 50_000, 1000)]
    seqs[3] = seqs[3][:100] + b"NNNNN" + seqs[3][105:500] + b"RYN" + seqs[3][503:]  # ambiguity codes
    seqs.append(ecoli_sequence[:997])  # leftover bases become single-base tokens
    kmer = KmerTokenizer.from_hf(hf_tokenizer, 6, overlap=False).encode_batch(seqs)
    hf = HFTokenizer(hf_tokenizer).encode_batch(seqs)
    for a, b in zip(kmer, hf):
        assert a.dtype == np.int32
        assert a.tolist() == b.tolist()
    assert len(kmer[0]) == 2 + 1000 // 6 + 1000 % 6
    assert len(kmer[3]) > len(kmer[0])  # N runs split k-mers: token counts vary


def test_overlapping_kmers_follow_dnabert(hf_tokenizer, ecoli_sequence):
    vocab = hf_tokenizer.get_vocab()
    tok = KmerTokenizer.from_hf(hf_tokenizer, 6, overlap=True)
    seqs = [ecoli_sequence[:512], ecoli_sequence[512:1024], ecoli_sequence[2000:2200] + b"N" + ecoli_sequence[2201:2512]]
    for seq, ids in zip(seqs, tok.encode_batch(seqs)):
        assert ids.tolist() == dnabert_reference(seq.decode(), 6, vocab)
    assert len(tok.encode_batch(seqs)[0]) == 512 - 6 + 1 + 2


def test_tokenizer_spec_is_validated_and_described():
    assert TokenizerSpec.from_config({"kind": "kmer", "k": 3, "overlap": True}).describe() == "kmer(k=3,overlapping)"
    assert TokenizerSpec.from_config({}).describe() == "hf"
    with pytest.raises(GenembedError, match="tokenizer.kind"):
        TokenizerSpec.from_config({"kind": "bpe"})


def test_tokens_round_trip_through_memory_mapped_files(tmp_path, hf_tokenizer, ecoli_sequence):
    tok = make_tokenizer(TokenizerSpec("hf"), hf_tokenizer)
    rows = tok.encode_batch([ecoli_sequence[:300], ecoli_sequence[300:310] + b"N", ecoli_sequence[:7]])
    write_tokens(tmp_path / "t.tokens.npy", tmp_path / "t.offsets.npy", rows)
    flat, offsets = read_tokens(tmp_path / "t.tokens.npy", tmp_path / "t.offsets.npy")
    assert isinstance(flat, np.memmap)
    assert [flat[offsets[i] : offsets[i + 1]].tolist() for i in range(3)] == [r.tolist() for r in rows]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["t.offsets.npy", "t.tokens.npy"]


def test_windows_longer_than_the_model_are_refused_naming_both_numbers():
    with pytest.raises(GenembedError, match="600 tokens per window but the model takes at most 512"):
        check_lengths([np.zeros(600, np.int32)], 512, "shard.parquet")


def test_windows_and_token_jobs_with_a_kmer_tokenizer_do_not_load_transformers(tmp_path, prepared_slice):
    """Light jobs: the run plan carries the k-mer tables, so windowing and tokenizing need only numpy."""
    import subprocess
    import sys

    from helpers import default_plan

    default_plan().write(tmp_path / "model.json")
    code = ("import sys; from genembed.run.pipeline import tokenize_stage, window_stage; from genembed.encode.plan import RunPlan; "
            f"plan = RunPlan.read({str(tmp_path / 'model.json')!r}); "
            f"n = window_stage(plan, 'eco', {str(prepared_slice)!r}, 0, {str(tmp_path / 'w.parquet')!r}); "
            f"tokenize_stage(plan, {str(tmp_path / 'w.parquet')!r}, {str(prepared_slice)!r}, "
            f"{str(tmp_path / 't.npy')!r}, {str(tmp_path / 'o.npy')!r}); "
            "print(n, 'transformers' in sys.modules, 'torch' in sys.modules)")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert res.stdout.split() == ["799", "False", "False"]
