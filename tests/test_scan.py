"""Dense scans (the promoter track's windows every few bp) equal embedding each window on its own."""

from dataclasses import replace

import numpy as np
import pytest

from genembed.embed import embed_sequences


def _scanner_and_reference(plan):
    from genembed.scan import Scanner

    embedder = plan.embedder()
    tokenizer = plan.make_tokenizer(embedder.tokenizer)
    scan = Scanner(embedder, tokenizer, plan.max_tokens)
    return scan, lambda seqs: embed_sequences(embedder, tokenizer, seqs, plan.max_tokens)


def _gappy(ecoli_sequence: bytes, n: int = 30_000) -> bytes:
    block = bytearray(ecoli_sequence[:n])
    block[5_000:5_100] = b"N" * 100  # a gap, and an ambiguity code the vocabulary lacks ([UNK], never pooled)
    block[7_003] = ord("R")
    return bytes(block)


@pytest.mark.parametrize("embed", [{}, {"strands": "average"}, {"layer": -3}], ids=["last layer", "both strands",
                                                                                    "inner layer"])
def test_a_dense_scan_with_the_bundled_model_equals_embedding_each_window(ecoli_sequence, embed):
    """genembed-conv's states are local (20 bp each side), so the scan runs it once along the sequence
    and again on window edges only; the vectors are those of each window embedded alone."""
    from helpers import default_plan

    plan = default_plan()
    plan = replace(plan, embed=replace(plan.embed, precision="fp32", **embed))
    scan, reference = _scanner_and_reference(plan)
    assert scan.reach == 20  # the shared pass is taken
    block = _gappy(ecoli_sequence)
    starts = np.r_[np.arange(0, len(block) - 500 + 1, 100), 1, 29_500 - 7]  # the ends, and starts off the step
    got = scan(block, starts, 500)
    want = reference([block[s : s + 500] for s in starts])
    assert got.shape == want.shape == (len(starts), 128)
    np.testing.assert_allclose(got, want, rtol=2e-3, atol=2e-4)  # float16 values: one unit in the last place
    cos = (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)
    assert cos.min() > 0.9999


def test_a_dense_scan_with_an_attention_model_embeds_each_window(ecoli_sequence, tiny_bert):
    """A BERT's states depend on the whole window: no shared pass, each window embedded alone."""
    from helpers import kmer_plan

    scan, reference = _scanner_and_reference(kmer_plan(tiny_bert, size=600, precision="fp32"))
    assert scan.reach is None
    block = ecoli_sequence[:5_000]
    starts = np.arange(0, 4_400, 300)
    np.testing.assert_array_equal(scan(block, starts, 600), reference([block[s : s + 600] for s in starts]))


def test_max_pooling_or_a_start_token_turns_the_shared_pass_off():
    from helpers import default_plan

    plan = default_plan()
    scan, _ = _scanner_and_reference(replace(plan, embed=replace(plan.embed, pooling="max")))
    assert scan.reach is None
