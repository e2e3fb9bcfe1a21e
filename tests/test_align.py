"""Verification's alignments, on real E. coli sequence: the banded traceback gives the same
alignment score, ends and a CIGAR that spells that score as parasail's full-matrix traceback,
across divergence, soft-masked and N-containing sequence, and a long indel that the first band
cannot hold."""

from __future__ import annotations

import re

import numpy as np
import pytest

from genembed.align import BLASTN, Aligner
from genembed.banded import extension
from genembed.evaluate import mutate
from genembed.tokenize import reverse_complement

_OPS = re.compile(r"(\d+)([=XID])")


def _spelled(cigar: str, query: bytes, target: bytes) -> tuple[int, int, int]:
    """The CIGAR's score under blastn scoring (N scores 0), and the query and target bases it spans;
    checks that '=' and 'X' say what the bases are."""
    score = i = j = 0
    for n, op in _OPS.findall(cigar):
        n = int(n)
        if op in "=X":
            for a, b in zip(query[i : i + n].upper(), target[j : j + n].upper()):
                same = a == b and a in b"ACGT"
                assert same == (op == "="), (op, chr(a), chr(b))
                score += 0 if b"N" in bytes([a, b]) else BLASTN.match if same else BLASTN.mismatch
            i, j = i + n, j + n
        else:
            score -= BLASTN.gap_open + n * BLASTN.gap_extend
            i, j = (i + n, j) if op == "I" else (i, j + n)
    return score, i, j


CASES = {
    "identical": lambda s, r: s,
    "5%": lambda s, r: mutate(s, len(s), 0.05, 0.1, r),
    "20% reverse strand": lambda s, r: reverse_complement(mutate(s, len(s), 0.20, 0.1, r)),
    "35%": lambda s, r: mutate(s, len(s), 0.35, 0.1, r),
    "soft-masked with Ns": lambda s, r: (s[:300].lower() + b"N" * 25 + mutate(s[325:], len(s) - 325, 0.1, 0.1, r)),
    "a 300-bp deletion": lambda s, r: s[:700] + s[1000:],
    "half of it unrelated": lambda s, r: bytes(r.permutation(np.frombuffer(s[:900], np.uint8))) + s[900:],
}


@pytest.mark.parametrize("case", CASES)
def test_the_banded_traceback_gives_the_full_matrix_alignments_score_and_ends(case, ecoli_sequence):
    rng = np.random.default_rng(7)
    source = ecoli_sequence[50_000:52_000]
    query = CASES[case](source, rng)
    target = ecoli_sequence[49_700:52_300]
    if case == "20% reverse strand":
        target = reverse_complement(target)
    aligner = Aligner()
    best = aligner.best(query, target)
    score, qs, qe, ts, te, cigar = aligner.align(query, target, best)
    full = aligner._full_align(query, target, *best)
    banded = extension(query, target, best[1:], best[0], BLASTN.match, BLASTN.mismatch, BLASTN.gap_open,
                       BLASTN.gap_extend)
    assert banded == (qs, ts, cigar)  # the band, not the fallback, gave it
    assert score == full[0] == best[0] > 0
    assert (qe, te) == (full[2], full[4])
    assert _spelled(cigar, query[qs:qe], target[ts:te]) == (score, qe - qs, te - ts)
