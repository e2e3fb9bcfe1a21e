"""Banded traceback for :meth:`genembed.align.Aligner.align` (compiled with numba, cached on disk).

Given where the best local alignment ends and its score (parasail's striped kernels find both),
the alignment is the best *extension* leftwards from that end: dynamic programming on the reversed
prefixes, anchored at the end, in a band of diagonals, with the traceback from the best cell. It
replaces a reverse Smith-Waterman pass plus a full-matrix traceback: about ``len * (2 * band + 1)``
cells instead of ``2 * len**2``. The band is exact when the extension reaches the known score (an
alignment of that score lies inside it); otherwise the caller widens it or falls back.
"""

from __future__ import annotations

import numpy as np
from numba import njit

NEG = -(1 << 28)
OPS = np.frombuffer(b"=XID", dtype=np.uint8)  # op codes 0-3
CODES = np.full(256, 4, dtype=np.uint8)  # A, C, G, T in either case; anything else (N, IUPAC) scores 0
for _i, _b in enumerate(b"ACGT"):
    CODES[_b] = CODES[_b + 32] = _i


@njit(cache=True, nogil=True)
def _extend(q: np.ndarray, t: np.ndarray, match: int, mismatch: int, gap_open: int, gap_extend: int, w: int):
    """Best alignment of ``q`` against ``t`` that starts at both their first positions (their
    reversed prefixes: the alignment's end), ends anywhere, and keeps within ``w`` diagonals.
    Returns its score, lengths used of ``q`` and ``t``, and its ops (0 '=', 1 'X', 2 'I', 3 'D'),
    read from the far end of the extension back to the anchor."""
    n, m = len(q), len(t)
    first = gap_open + gap_extend  # a gap of length L costs gap_open + L * gap_extend
    trace = np.zeros((n + 1, 2 * w + 1), np.uint8)  # bits 0-1: H from diagonal/E/F; 4: E extended; 8: F extended
    hp = np.full(m + 2, NEG, np.int32)
    fp = np.full(m + 2, NEG, np.int32)
    hc = np.full(m + 2, NEG, np.int32)
    fc = np.full(m + 2, NEG, np.int32)
    hp[0] = 0
    for j in range(1, min(m, w) + 1):
        hp[j] = -(gap_open + gap_extend * j)
        trace[0, j + w] = 1 | 4
    best, bi, bj = 0, 0, 0
    for i in range(1, n + 1):
        a, b = max(0, i - w), min(m, i + w)
        if a > b:
            break
        if a >= 1:
            hc[a - 1] = NEG  # left of the band: stale from two rows back
        e = NEG
        qi = q[i - 1]
        for j in range(a, b + 1):
            bits = 0
            fo = hp[j] - first
            fe = fp[j] - gap_extend
            if fe > fo:
                f = fe
                bits |= 8
            else:
                f = fo
            if j == 0:
                hc[0] = fc[0] = -(gap_open + gap_extend * i)
                trace[i, w - i] = 2 | 8
                continue
            eo = hc[j - 1] - first
            ee = e - gap_extend
            if ee > eo:
                e = ee
                bits |= 4
            else:
                e = eo
            h = hp[j - 1]
            tj = t[j - 1]
            if h > NEG:
                if qi < 4 and tj < 4:
                    h += match if qi == tj else mismatch
            src = 0
            if e > h:
                h, src = e, 1
            if f > h:
                h, src = f, 2
            hc[j] = h
            fc[j] = f
            trace[i, j - i + w] = bits | src
            if h > best:
                best, bi, bj = h, i, j
        hp, hc = hc, hp
        fp, fc = fc, fp
    ops = np.empty(bi + bj, np.uint8)
    k, i, j, state = 0, bi, bj, 0
    while i > 0 or j > 0:
        bits = trace[i, j - i + w]
        if state == 0:
            state = bits & 3
            if state == 0:
                ops[k] = 0 if q[i - 1] == t[j - 1] and q[i - 1] < 4 else 1
                k += 1
                i -= 1
                j -= 1
        elif state == 1:
            ops[k] = 3
            k += 1
            state = 1 if bits & 4 else 0
            j -= 1
        else:
            ops[k] = 2
            k += 1
            state = 2 if bits & 8 else 0
            i -= 1
    return best, bi, bj, ops[:k]


def extension(query: bytes, target: bytes, end: tuple[int, int], score: int, match: int, mismatch: int,
              gap_open: int, gap_extend: int, max_cells: int = 50_000_000) -> tuple[int, int, str] | None:
    """The local alignment of ``score`` that ends at ``end`` (inclusive query and target positions):
    its query and target starts and CIGAR (``=XID``); None when no band within ``max_cells`` reaches
    the score."""
    qe, te = end
    q = CODES[np.frombuffer(query[: qe + 1], dtype=np.uint8)[::-1]]
    t = CODES[np.frombuffer(target[: te + 1], dtype=np.uint8)[::-1]]
    w = 32
    while (len(q) + 1) * (2 * w + 1) <= max_cells:
        got, n, m, ops = _extend(q, t, match, mismatch, gap_open, gap_extend, w)
        if got >= score:
            return qe + 1 - n, te + 1 - m, _cigar(ops)
        if w >= max(len(q), len(t)):
            break
        w *= 4
    return None


def _cigar(ops: np.ndarray) -> str:
    if not len(ops):
        return ""
    cut = np.flatnonzero(ops[1:] != ops[:-1]) + 1
    starts = np.concatenate([[0], cut])
    lengths = np.diff(np.concatenate([starts, [len(ops)]]))
    return "".join(f"{n}{chr(OPS[op])}" for n, op in zip(lengths.tolist(), ops[starts].tolist()))
