"""Verify candidate loci by alignment, and say how surprising an alignment is.

A locus the embedding search proposes is checked by aligning the query to the candidate's stretch
of genome (with flanks) by Smith-Waterman with affine gaps (parasail's striped SIMD kernels), scored
as blastn scores: match +2, mismatch -3, gap of length L costs 5 + 2L. Every candidate gets a
score-only pass (the query profile is made once per strand and reused); only the significant ones
are aligned again with traceback, for the CIGAR and counts: leftwards from where the best alignment
ends, in a band that follows the path (:mod:`genembed.search.banded`), with parasail's full-matrix
traceback where the band cannot reach the score.

Chosen by measurement on 2-kb E. coli queries against 3-kb targets (2 cores, ``benchmarks/search.py``
has the search-level numbers): at 30% divergence the true target scores a median 751 against at
most 36 for an unrelated stretch, so the alignment tells homologs from chance far past where the
embedding does; minimap2 (mappy) found only 8 of 40 such targets (its minimizer seeds need longer
exact matches) and edlib aligns end to end by edit distance (no local alignment, no affine gaps).
Score-only Smith-Waterman of a 2-kb query against 2.4 kb costs 0.24 ms (8-bit; 0.6 ms more in 16-bit
when it saturates, as every real homolog does); the traceback 0.35 ms in the band (parasail's
reverse pass plus full-matrix traceback took 2-6 ms).

Significance follows Karlin and Altschul: an alignment of score S between a query of m bp and a
database of N bp is expected by chance ``E = K m N exp(-lambda S)`` times. lambda and K are not
taken from tables: they are fitted (a Gumbel distribution, by moments) to the best scores of
shuffled genome pieces against real pieces of the indexed genomes, so they match this scoring and
this index's composition. N counts both strands of every indexed genome.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

EULER = 0.5772156649015329
_OP = re.compile(rb"(\d+)([=XIDM])")


@dataclass(frozen=True)
class Scoring:
    """Nucleotide scores, gaps as BLAST counts them: a gap of length L costs ``gap_open + L * gap_extend``."""

    match: int = 2
    mismatch: int = -3
    gap_open: int = 5
    gap_extend: int = 2


BLASTN = Scoring()


@dataclass(frozen=True)
class Significance:
    """Karlin-Altschul parameters of a scoring scheme on a database of ``size`` bp (both strands)."""

    lam: float
    k: float
    size: int

    def evalue(self, score: float, query_length: int) -> float:
        """Alignments of at least ``score`` expected by chance for a query of this length."""
        return self.k * query_length * self.size * math.exp(-self.lam * score)

    def bits(self, score: float) -> float:
        """The normalised (bit) score."""
        return (self.lam * score - math.log(self.k)) / math.log(2)


class Aligner:
    """Smith-Waterman alignments of one query against many targets (parasail's striped kernels)."""

    def __init__(self, scoring: Scoring = BLASTN):
        import parasail

        self.scoring = scoring
        self._p = parasail
        self._matrix = parasail.matrix_create("ACGT", scoring.match, scoring.mismatch)
        # parasail charges a gap of length L open + (L - 1) * extend
        self._open, self._extend = scoring.gap_open + scoring.gap_extend, scoring.gap_extend
        self._profiles: dict[tuple[bytes, int], object] = {}

    def _profile(self, query: bytes, bits: int):
        profile = self._profiles.get((query, bits))
        if profile is None:
            if len(self._profiles) > 128:
                self._profiles.clear()
            create = self._p.profile_create_8 if bits == 8 else self._p.profile_create_16
            profile = self._profiles[query, bits] = create(query.decode(), self._matrix)
        return profile

    def best(self, query: bytes, target: bytes) -> tuple[int, int, int]:
        """Score of the best local alignment, and the (inclusive) query and target positions where it
        ends. The 8-bit kernel (32 cells at a time) first: most candidates score far below its limit
        of 127; a saturated one is scored again 16-bit, then (past 32,767: queries over ~16 kb) 32-bit."""
        text = target.decode()
        r = self._p.sw_striped_profile_8(self._profile(query, 8), text, self._open, self._extend)
        if r.saturated:
            r = self._p.sw_striped_profile_16(self._profile(query, 16), text, self._open, self._extend)
        if r.saturated:
            r = self._p.sw_striped_32(query.decode(), text, self._open, self._extend, self._matrix)
        return int(r.score), int(r.end_query), int(r.end_ref)

    def align(self, query: bytes, target: bytes, best: tuple[int, int, int] | None = None
              ) -> tuple[int, int, int, int, int, str]:
        """The best local alignment: score, query start and end, target start and end (half-open)
        and its CIGAR (``=XID``), traced back only on the segment it covers; ``best`` is what
        :meth:`best` gave for this query and target, where known."""
        score, qe, te = best or self.best(query, target)
        if score <= 0:
            return 0, 0, 0, 0, 0, ""
        from genembed.search.banded import extension

        s = self.scoring
        found = extension(query, target, (qe, te), score, s.match, s.mismatch, s.gap_open, s.gap_extend)
        if found is not None:
            qs, ts, cigar = found
            return score, qs, qe + 1, ts, te + 1, cigar
        return self._full_align(query, target, score, qe, te)

    def _full_align(self, query: bytes, target: bytes, score: int, qe: int, te: int) -> tuple[int, int, int, int, int, str]:
        """:meth:`align` without a band: the start from a reverse Smith-Waterman pass, the CIGAR
        from a full-matrix traceback of the segment (parasail)."""
        bits = 16 if score < 32_000 else 32  # the kernels' width: 16-bit cells hold scores below 32,767
        # the start: the best alignment of the reversed prefixes ends there
        rq, rt = query[: qe + 1][::-1].decode(), target[: te + 1][::-1].decode()
        r = getattr(self._p, f"sw_striped_{bits}")(rq, rt, self._open, self._extend, self._matrix)
        qs, ts = qe - int(r.end_query), te - int(r.end_ref)
        g = getattr(self._p, f"nw_trace_scan_{bits}")(query[qs : qe + 1].decode(), target[ts : te + 1].decode(),
                                                      self._open, self._extend, self._matrix)
        cigar = g.cigar.decode.decode()
        return int(g.score), qs, qe + 1, ts, te + 1, cigar


def cigar_counts(cigar: str) -> tuple[int, int, int, int]:
    """Matches, mismatches, gap opens and gap bases of an ``=XID`` CIGAR."""
    matches = mismatches = opens = gaps = 0
    for n, op in _OP.findall(cigar.encode()):
        n = int(n)
        if op == b"=":
            matches += n
        elif op == b"X":
            mismatches += n
        else:
            opens += 1
            gaps += n
    return matches, mismatches, opens, gaps


def fit_significance(queries: Sequence[bytes], targets: Sequence[bytes], aligner: Aligner | None = None
                     ) -> Significance:
    """lambda and K of the aligner's scoring, fitted to the best local scores of shuffled ``queries``
    against unrelated ``targets`` (pairs; a Gumbel by moments: lambda = pi / (sd sqrt 6), and
    K = exp(lambda u) / (m n) with u = mean - gamma / lambda, m and n the mean lengths). The database
    size of the result is 0: set it with :func:`dataclasses.replace`."""
    aligner = aligner or Aligner()
    pairs = [(q, t) for q, t in zip(queries, targets) if q and t]
    if len(pairs) < 30:
        raise ValueError(f"{len(pairs)} pairs are too few to fit alignment statistics")
    s = np.array([aligner.best(q, t)[0] for q, t in pairs], dtype=np.float64)
    lam = math.pi / (max(s.std(), 1e-9) * math.sqrt(6))
    u = s.mean() - EULER / lam
    m = float(np.mean([len(q) for q, _ in pairs]))
    n = float(np.mean([len(t) for _, t in pairs]))
    return Significance(float(lam), float(math.exp(lam * u) / (m * n)), 0)
