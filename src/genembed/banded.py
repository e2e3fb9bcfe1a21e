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
    scores = np.zeros(25, np.int32)  # code pair -> score (N, code 4, scores 0)
    for x in range(4):
        for y in range(4):
            scores[5 * x + y] = match if x == y else mismatch
    trace = np.zeros((n + 1, 2 * w + 1), np.uint8)  # bits 0-1: H from diagonal/E/F; 4: E extended; 8: F extended
    h_row = np.full(m + 2, NEG, np.int32)  # H of the previous row, overwritten in place along the current one
    f_row = np.full(m + 2, NEG, np.int32)
    h_row[0] = 0
    for j in range(1, min(m, w) + 1):
        h_row[j] = -(gap_open + gap_extend * j)
        trace[0, j + w] = 1 | 4
    best, bi, bj = 0, 0, 0
    for i in range(1, n + 1):
        a, b = max(0, i - w), min(m, i + w)
        if a > b:
            break
        row = trace[i]
        shift = w - i
        qi = 5 * q[i - 1]
        if a == 0:
            diag = h_row[0]
            h_row[0] = f_row[0] = -(gap_open + gap_extend * i)
            row[shift] = 2 | 8
            left = h_row[0]
            a = 1
        else:
            diag = h_row[a - 1]
            left = NEG
        e = NEG
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
            row[j + shift] = bits
            if h > best:
                best, bi, bj = h, i, j
        if b + 1 <= m:
            h_row[b + 1] = NEG  # right of the band: never reached from this row
            f_row[b + 1] = NEG
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
