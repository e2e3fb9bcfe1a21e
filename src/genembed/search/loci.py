"""Hits of a query as loci: a query longer than a window is cut into the index's windows, every piece
is searched, and the hits that keep the query's order on one contig and strand are chained into a
locus, as minimap2 chains anchors on a diagonal. Each locus has a score (the mean cosine over its
chain) and an E-value from an :class:`EmbeddingNull`: how often a query window that has no homolog
(a shuffled one) finds an indexed window at least this similar."""

from __future__ import annotations

import math
from bisect import bisect_left, bisect_right
from dataclasses import dataclass

import numpy as np
import polars as pl

DEEP_PARTNERS = 2  # a deep hit is kept when hits of this many other pieces lie on its diagonal
_SCHEMA = {"query": pl.String, "query_start": pl.Int64, "query_end": pl.Int64, "genome": pl.String,
           "contig": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String, "score": pl.Float32,
           "windows": pl.Int64, "evalue": pl.Float64, "rank": pl.Int64}
# what an alignment that verified a locus adds (null where none did: an embedding-only locus)
ALIGNMENT_SCHEMA = {"verified": pl.Boolean, "aln_score": pl.Int64, "bitscore": pl.Float64, "identity": pl.Float64,
                    "aligned": pl.Int64, "matches": pl.Int64, "mismatches": pl.Int64, "gap_opens": pl.Int64,
                    "gaps": pl.Int64, "cigar": pl.String}
LOCUS_COLUMNS = list(_SCHEMA) + list(ALIGNMENT_SCHEMA)
_CODE = np.full(256, 4, dtype=np.uint8)
for _i, _b in enumerate(b"ACGT"):
    _CODE[_b] = _CODE[_b + 32] = _i


def pieces(length: int, size: int, stride: int) -> list[tuple[int, int]]:
    """Query windows with the index's size and stride, the last one flush with the end; a query no
    longer than a window is one piece, as it is."""
    if length <= size:
        return [(0, length)]
    starts = list(range(0, length - size + 1, stride))
    if starts[-1] != length - size:
        starts.append(length - size)
    return [(s, s + size) for s in starts]


def kmer_set(seq: bytes, k: int = 11) -> np.ndarray:
    """The distinct k-mers of a sequence that hold only A/C/G/T, as integers."""
    codes = _CODE[np.frombuffer(seq, dtype=np.uint8)]
    if len(codes) < k:
        return np.zeros(0, dtype=np.int64)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k)
    clean = (windows < 4).all(1)
    values = (windows[clean].astype(np.int64) << (2 * np.arange(k - 1, -1, -1, dtype=np.int64))).sum(1)
    return np.unique(values)


def orientation(query: bytes, target: bytes, reverse: bytes, k: int = 11) -> str:
    """``+`` or ``-``: the strand of ``target`` (``reverse`` is its reverse complement) sharing more
    k-mers with the query; ``.`` when neither shares more (an embedding that is the same on both
    strands cannot tell)."""
    q = kmer_set(query, k)
    fwd, rev = len(np.intersect1d(q, kmer_set(target, k))), len(np.intersect1d(q, kmer_set(reverse, k)))
    return "+" if fwd > rev else "-" if rev > fwd else "."


@dataclass(frozen=True)
class EmbeddingNull:
    """The best cosine a shuffled query window of the index's size reaches among the indexed windows
    follows a Gumbel distribution (location ``mu``, scale ``beta``, fitted on ``samples`` of them).
    ``(s - mu) / beta`` is a window score normalised so that ``exp(-x)`` is the expected number of
    indexed windows at least that similar to one query window by chance."""

    mu: float
    beta: float
    samples: int

    @classmethod
    def fit(cls, best: np.ndarray) -> "EmbeddingNull":
        """Fitted by moments to the best scores of shuffled windows."""
        best = np.asarray(best, dtype=np.float64)
        beta = max(float(best.std()) * math.sqrt(6) / math.pi, 1e-4)
        return cls(float(best.mean()) - 0.5772156649015329 * beta, beta, len(best))

    def normalise(self, score: np.ndarray) -> np.ndarray:
        return (np.asarray(score, dtype=np.float64) - self.mu) / self.beta


def chain_evalue(total: np.ndarray, windows: np.ndarray, tests: np.ndarray, size: int, stride: int) -> np.ndarray:
    """E-values of chains of ``windows`` hits whose normalised scores sum to ``total``, for queries
    giving ``tests`` windows searched (pieces x strands). Overlapping windows are not independent:
    a chain of w windows ``stride`` apart counts as r = 1 + (w - 1) stride / size independent ones,
    with the mean normalised score each. The chance that r independent hits in a consistent order
    sum to T is Karlin and Altschul's sum statistic, exp(-T) T^(r-1) / (r! (r-1)!) (the Gamma
    function for fractional r); a one-window locus gets exp(-x). E = tests x that chance."""
    from scipy.special import gammaln

    w = np.asarray(windows, dtype=np.float64)
    r = 1 + (w - 1) * min(1.0, stride / size)
    t = np.asarray(total, dtype=np.float64) / w * r
    with np.errstate(divide="ignore", invalid="ignore"):
        log_p = np.where(r > 1, -t + (r - 1) * np.log(np.maximum(t, 1e-300)) - gammaln(r + 1) - gammaln(r), -t)
    log_p = np.where((r > 1) & (t <= r - 1), 0.0, np.minimum(log_p, 0.0))  # no tail below the mode
    return np.asarray(tests, dtype=np.float64) * np.exp(log_p)


def _along() -> pl.Expr:
    """A hit's target start along its strand (negated on ``-``), so that a chain's targets ascend."""
    return pl.when(pl.col("strand") == "-").then(-pl.col("start")).otherwise(pl.col("start"))


def chain(hits: pl.DataFrame, size: int, stride: int, k: int, tests: dict[str, int], lookback: int = 3,
          lone_rank: int | None = None) -> pl.DataFrame:
    """Loci from per-piece hits (columns: query, piece, query_start, query_end, genome, contig, start,
    end, strand, score, x: the score normalised by an :class:`EmbeddingNull`, ambiguous: a hit
    listed on both strands because nothing told its strand; a locus of one such hit has strand ``.``).

    Per query, contig and strand, hits are chained by dynamic programming as minimap2 chains anchors:
    a hit extends a chain ending in one of the ``lookback`` pieces before it when the target moved as
    far as the query did (forwards on ``+``, backwards on ``-``) within a stride, counted from the
    chain's first hit: a locus's target span differs from its query span by at most one stride (so
    at most one stride of indels). Each chain, best first, is a locus; one overlapping a better locus
    of the same query by half is dropped. Loci are ranked by their summed score; ``evalue`` is
    :func:`chain_evalue` with ``tests`` windows searched per query. With ``lone_rank``, a hit that
    too few hits of other pieces could chain with is dropped unless its ``rank`` (in its piece's hit
    list) is within it: deep hit lists then cost little where most deep hits are chance ones; and the
    E-value counts only the hits within it (a locus of deep hits alone gets E = ``tests``)."""
    keys = ["query", "genome", "contig", "strand"]
    if lone_rank is not None:
        hits = _chainable_or_top(hits, keys, stride, lone_rank, lookback)
    if hits.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    # within a piece, by target position along the strand (so links are found by binary search)
    hits = hits.with_columns(_along().alias("_along")).sort([*keys, "piece", "_along"])
    groups = hits.select(keys).with_row_index("row").group_by(keys, maintain_order=True).agg(pl.col("row").min(), pl.len())
    # plain Python numbers: the loops below are short, and numpy's per-call cost would dominate them
    piece, qs, score, along = (hits[c].to_list() for c in ("piece", "query_start", "score", "_along"))
    hits = hits.drop("_along")
    chain_of = [-1] * hits.height
    n_chains = 0
    for group_start, n in groups.select("row", "len").iter_rows():
        n_chains = _chain_group(piece, qs, along, score, group_start, group_start + n, stride, lookback, chain_of, n_chains)
    # the E-value counts only the hits within lone_rank of their lists: a chain through deep hits is
    # a candidate to align, but the null (the best of the index's windows for each query window)
    # does not describe hits picked from 200 per window, which chance (a region of the query's
    # composition) lines up on a diagonal often enough
    counted = pl.col("rank") <= lone_rank if lone_rank is not None else pl.lit(True)
    loci = hits.with_columns(pl.Series("chain", chain_of, dtype=pl.Int64), counted.alias("_counted")).group_by("chain").agg(
        *(pl.col(c).first() for c in keys),
        pl.col("query_start").min(), pl.col("query_end").max(), pl.col("start").min(), pl.col("end").max(),
        pl.col("score").mean(), pl.col("score").sum().alias("total"), pl.len().alias("windows"),
        pl.col("x").filter("_counted").sum(), pl.col("_counted").sum().alias("_w"), pl.col("ambiguous").all(),
    ).with_columns(pl.when(pl.col("ambiguous") & (pl.col("windows") == 1)).then(pl.lit("."))
                   .otherwise(pl.col("strand")).alias("strand")) \
        .sort(["query", "total", "windows", "chain"], descending=[False, True, True, False])
    loci = loci.filter(pl.Series(primary(loci, k))).with_columns(pl.int_range(1, pl.len() + 1).over("query").alias("rank"))
    searched = loci["query"].replace_strict(tests, return_dtype=pl.Int64).to_numpy()
    w = loci["_w"].to_numpy()
    evalue = np.where(w > 0, chain_evalue(loci["x"].to_numpy(), np.maximum(w, 1), searched, size, stride), searched)
    return loci.with_columns(pl.Series("evalue", evalue), pl.col("windows").cast(pl.Int64),
                             pl.col("score").cast(pl.Float32)).select(list(_SCHEMA))


def unverified(loci: pl.DataFrame) -> pl.DataFrame:
    """Loci with the alignment columns empty (``verified`` false)."""
    return loci.with_columns(pl.lit(False).alias("verified"), *(pl.lit(None, dtype=t).alias(c)
                             for c, t in ALIGNMENT_SCHEMA.items() if c != "verified")).select(LOCUS_COLUMNS)


def _chainable_or_top(hits: pl.DataFrame, keys: list[str], stride: int, lone_rank: int, lookback: int) -> pl.DataFrame:
    """The hits within ``lone_rank`` of their piece's list, and those that hits of
    :data:`DEEP_PARTNERS` other pieces could chain with: within ``lookback`` pieces, a stride off
    its diagonal at most, and on another window (two pieces that hit the same window do not make a
    chain of it). Chance pairs on a diagonal are common among 200 hits per piece; chance triples
    are rare, and a diverged copy of a query of several windows gives more than three."""
    hits = hits.with_row_index("_row").with_columns((_along() - pl.col("query_start")).alias("_diag"))
    hits = hits.with_columns((pl.col("_diag") // stride).alias("_bin"))
    deep = hits.filter(pl.col("rank") > lone_rank).select("_row", *keys, "_bin", "_diag", "piece", "start")
    others = hits.select(*keys, "_bin", "_diag", "piece", "start")
    linked = pl.concat([deep.with_columns(pl.col("_bin") + off) for off in (-1, 0, 1)]) \
        .join(others, on=[*keys, "_bin"], suffix="_o") \
        .filter((pl.col("piece") != pl.col("piece_o")) & ((pl.col("piece") - pl.col("piece_o")).abs() <= lookback)
                & (pl.col("start") != pl.col("start_o")) & ((pl.col("_diag") - pl.col("_diag_o")).abs() <= stride)) \
        .group_by("_row").agg(pl.col("piece_o").n_unique().alias("_pieces")) \
        .filter(pl.col("_pieces") >= DEEP_PARTNERS).select("_row")
    keep = (pl.col("rank") <= lone_rank) | pl.col("_row").is_in(linked["_row"].implode())
    return hits.filter(keep).drop("_row", "_diag", "_bin")


def _chain_group(piece: list[int], qs: list[int], t: list[int], s: list[float], lo: int, hi: int, stride: int,
                 lookback: int, out: list[int], first: int) -> int:
    """Chain one query's hits on one contig and strand, rows ``lo`` to ``hi`` (sorted by piece, then
    by ``t``, the target position along the strand), writing chain numbers from ``first`` into
    ``out``; returns the next free number. A link is kept only when the target moved as far as the
    query did since the chain's first hit, within a stride; the hits a link can reach in a piece
    are found by binary search, so deep hit lists on one long contig cost n log n, not n squared."""
    if piece[lo] == piece[hi - 1]:  # hits of one piece only (a lone hit too): nothing to link, each its own chain
        for i in range(lo, hi):
            out[i] = first
            first += 1
        return first
    rows_of: dict[int, tuple[int, int]] = {}  # piece -> its rows
    a = lo
    for i in range(lo + 1, hi + 1):
        if i == hi or piece[i] != piece[a]:
            rows_of[piece[a]] = (a, i)
            a = i
    left, right, span_of = bisect_left, bisect_right, rows_of.get
    best, pred, head = s[lo:hi], [-1] * (hi - lo), list(range(lo, hi))  # indexed by row - lo
    for i in range(lo, hi):
        cand, ti, qi, p = -1, t[i], qs[i], piece[i]
        for back in range(1, lookback + 1):
            span = span_of(p - back)
            if span is None:
                continue
            want = ti - (qi - qs[span[0]])  # where the target of a collinear hit of that piece sits
            for j in range(left(t, want - stride, *span), right(t, want + stride, *span)):
                h = head[j - lo]
                if abs(ti - t[h] - (qi - qs[h])) <= stride and (cand < 0 or best[j - lo] > best[cand - lo]):
                    cand = j
        if cand >= 0:
            best[i - lo] += best[cand - lo]
            pred[i - lo], head[i - lo] = cand, head[cand - lo]
    for i in sorted(range(lo, hi), key=lambda r: best[r - lo], reverse=True):  # stable: ties keep row order
        if out[i] >= 0:
            continue
        while i >= 0 and out[i] < 0:
            out[i] = first
            i = pred[i - lo]
        first += 1
    return first


def primary(loci: pl.DataFrame, k: int) -> list[bool]:
    """Per query, in rank order, the loci that do not overlap a kept one on the same contig by half of
    the shorter, up to ``k``."""
    keep = []
    kept: dict[str, list[tuple[str, str, int, int]]] = {}
    for query, genome, contig, start, end in loci.select("query", "genome", "contig", "start", "end").iter_rows():
        mine = kept.setdefault(query, [])
        spot = (genome, contig, start, end)
        ok = len(mine) < k and not any(overlapping(spot, other) for other in mine)
        if ok:
            mine.append(spot)
        keep.append(ok)
    return keep


def overlapping(x: tuple[str, str, int, int], y: tuple[str, str, int, int]) -> bool:
    """Whether two loci (genome, contig, start, end) share a contig and half of the shorter."""
    return x[:2] == y[:2] and min(x[3], y[3]) - max(x[2], y[2]) >= 0.5 * min(x[3] - x[2], y[3] - y[2])

