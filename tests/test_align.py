"""Verification's alignments, on real E. coli sequence: the banded traceback gives the same
alignment score, ends and a CIGAR that spells that score as parasail's full-matrix traceback,
across divergence, soft-masked and N-containing sequence, and a long indel that the first band
cannot hold."""

from __future__ import annotations

import re

import numpy as np
import pytest

from genembed.search.align import BLASTN, Aligner
from genembed.search.banded import extension
from genembed.data.windows import mutate
from genembed.encode.tokenize import reverse_complement

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


def test_the_packed_genome_copy_reads_as_the_fasta_does_with_other_letters_as_n(tmp_path, ecoli_sequence):
    import pysam

    from genembed.data.genome import Genome
    from genembed.data.packed import PackedGenome, packed

    rng = np.random.default_rng(11)
    odd = bytearray(ecoli_sequence[:20_003].lower())  # soft-masked, a length that is no multiple of 4
    odd[100:350] = b"N" * 250
    odd[5_000:5_003] = b"RYK"
    records = {"chr1": bytes(odd), "chr2": ecoli_sequence[40_000:47_001], "tiny": b"ACG", "gap": b"NNNNNNN"}
    fasta = tmp_path / "g.fa"
    fasta.write_bytes(b"".join(b">%s\n%s\n" % (name.encode(), seq) for name, seq in records.items()))
    pysam.faidx(str(fasta))
    genome = Genome(fasta)
    pack = packed(genome)
    assert pack is not None and (tmp_path / "g.fa.packed").stat().st_size == (20_003 + 3) // 4 + 7_001 // 4 + 1 + 1 + 2
    for name, seq in records.items():
        for _ in range(200):
            a = int(rng.integers(0, len(seq)))
            b = int(rng.integers(a + 1, len(seq) + 1))
            want = bytes(x if x in b"ACGT" else ord("N") for x in genome.fetch(name, a, b))
            assert pack.fetch(name, a, b) == want, (name, a, b)
    # a changed copy is not read through its old pack
    fasta.write_bytes(fasta.read_bytes().replace(b">tiny\nACG", b">tiny\nACT"))
    assert PackedGenome.open(fasta) is None
