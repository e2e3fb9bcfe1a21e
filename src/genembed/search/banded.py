"""Banded traceback for :meth:`genembed.search.align.Aligner.align` (compiled with numba, cached on disk).

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

from genembed.data.windows import encode  # base codes 0-3; 4 (N, IUPAC) scores 0

NEG = -(1 << 28)
FOLLOW = 16  # half-width of the band that follows the path: indels drift it a few bases at most
OPS = np.frombuffer(b"=XID", dtype=np.uint8)  # op codes 0-3


@njit(cache=True, nogil=True)
def _extend(q: np.ndarray, t: np.ndarray, match: int, mismatch: int, gap_open: int, gap_extend: int, w: int,
            follow: bool):
    """Best alignment of ``q`` against ``t`` that starts at both their first positions (their
    reversed prefixes: the alignment's end) and ends anywhere, within a band of ``2w + 1`` cells per
    row: about the main diagonal, or with ``follow`` about the path (the band moves one diagonal a
    row towards the previous row's best cell). Returns its score, the lengths of ``q`` and ``t`` it
    uses, and its ops (0 '=', 1 'X', 2 'I', 3 'D') from the far end of the extension to the anchor."""
    n, m = len(q), len(t)
    first = gap_open + gap_extend  # a gap of length L costs gap_open + L * gap_extend
    scores = np.zeros(25, np.int32)  # code pair -> score (N, code 4, scores 0)
    for x in range(4):
        for y in range(4):
            scores[5 * x + y] = match if x == y else mismatch
    width = 2 * w + 1
    trace = np.zeros((n + 1, width), np.uint8)  # bits 0-1: H from diagonal/E/F; 4: E extended; 8: F extended
    lo = np.empty(n + 1, np.int64)  # each row's first band column (may be negative: the band starts off the matrix)
    h_row = np.full(m + 2, NEG, np.int32)  # H of the previous row, overwritten in place along the current one
    f_row = np.full(m + 2, NEG, np.int32)  # (bands only move right, so the cells right of a band are unwritten)
    lo[0] = -w
    h_row[0] = 0
    for j in range(1, min(m, w) + 1):
        h_row[j] = -(gap_open + gap_extend * j)
        trace[0, j + w] = 1 | 4
    best, bi, bj = 0, 0, 0
    peak = 0  # the previous row's best column
    for i in range(1, n + 1):
        step = 1
        if follow:
            centre = lo[i - 1] + w
            step += (peak > centre) - (peak < centre)
        lo[i] = lo[i - 1] + step
        a, b = max(0, lo[i]), min(m, lo[i] + 2 * w)
        if a > b:
            break
        row = trace[i]
        qi = 5 * q[i - 1]
        if a == 0:
            diag = h_row[0] if lo[i - 1] <= 0 else NEG
            h_row[0] = f_row[0] = -(gap_open + gap_extend * i)
            row[-lo[i]] = 2 | 8
            left = h_row[0]
            a = 1
        else:
            diag = h_row[a - 1] if a - 1 >= lo[i - 1] else NEG  # outside the previous band: stale
            left = NEG
        e = NEG
        rowbest = NEG
        for j in range(a, b + 1):
            up = h_row[j]
            fo = up - first
            fe = f_row[j] - gap_extend
            f = max(fo, fe)
            eo = left - first
            ee = e - gap_extend
            e = max(eo, ee)
            d = diag + scores[qi + t[j - 1]]
            h = max(d, e)
            src = np.int32(e > d)  # ties go to the diagonal, then to E
            from_f = np.int32(f > h)
            h = max(h, f)
            src += from_f * (2 - src)
            bits = src | (np.int32(ee > eo) << 2) | (np.int32(fe > fo) << 3)
            diag = up
            h_row[j] = h
            f_row[j] = f
            left = h
            row[j - lo[i]] = bits
            if h > rowbest:
                rowbest, peak = h, j
        if rowbest > best:
            best, bi, bj = rowbest, i, peak
    ops = np.empty(bi + bj, np.uint8)
    k, i, j, state = 0, bi, bj, 0
    while i > 0 or j > 0:
        bits = trace[i, j - lo[i]]
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
    q, t = encode(query[: qe + 1])[::-1].copy(), encode(target[: te + 1])[::-1].copy()
    tries = [(FOLLOW, True)] + [(w, False) for w in (64, 256, 1024) if w < max(len(q), len(t)) + 64]
    for w, follow in tries:
        if (len(q) + 1) * (2 * w + 1) > max_cells:
            break
        got, n, m, ops = _extend(q, t, match, mismatch, gap_open, gap_extend, w, follow)
        if got >= score:
            return qe + 1 - n, te + 1 - m, _cigar(ops)
    return None


def _cigar(ops: np.ndarray) -> str:
    return _cigar_bytes(ops).tobytes().decode()


@njit(cache=True, nogil=True)
def _cigar_bytes(ops: np.ndarray) -> np.ndarray:
    """Run-length ``=XID`` text of op codes, as ASCII bytes."""
    out = np.empty(8 * len(ops) + 1, np.uint8)
    k, i, n = 0, 0, len(ops)
    digits = np.empty(20, np.uint8)
    while i < n:
        j = i
        while j < n and ops[j] == ops[i]:
            j += 1
        run, d = j - i, 0
        while run > 0:
            digits[d] = 48 + run % 10
            run //= 10
            d += 1
        for x in range(d - 1, -1, -1):
            out[k] = digits[x]
            k += 1
        out[k] = OPS[ops[i]]
        k += 1
        i = j
    return out[:k]
