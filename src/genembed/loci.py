"""Hits of a query as loci: a query longer than a window is cut into the index's windows, every piece
is searched, and the hits that keep the query's order on one contig and strand are chained into a
locus, as minimap2 chains anchors on a diagonal. Each locus has a score (the mean cosine over its
chain) and an E-value-like confidence from the query's similarity to random indexed windows."""

from __future__ import annotations

import numpy as np
import polars as pl

_SCHEMA = {"query": pl.String, "query_start": pl.Int64, "query_end": pl.Int64, "genome": pl.String,
           "contig": pl.String, "start": pl.Int64, "end": pl.Int64, "strand": pl.String, "score": pl.Float32,
           "windows": pl.Int64, "evalue": pl.Float64, "rank": pl.Int64}
LOCUS_COLUMNS = list(_SCHEMA)
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


def chain(hits: pl.DataFrame, stride: int, k: int, searched: int, lookback: int = 3) -> pl.DataFrame:
    """Loci from per-piece hits (columns: query, piece, query_start, query_end, genome, contig, start,
    end, strand, score, z, ambiguous: a hit listed on both strands because nothing told its strand;
    a locus of one such hit has strand ``.``).

    Per query, contig and strand, hits are chained by dynamic programming as minimap2 chains anchors:
    a hit extends a chain ending in one of the ``lookback`` pieces before it when the target moved as
    far as the query did (forwards on ``+``, backwards on ``-``), within a stride. Each chain, best
    first, is a locus; one overlapping a better locus of the same query by half is dropped. Loci are
    ranked by their summed score; ``evalue`` is ``searched`` times the one-sided normal tail of the
    chain's combined z (Stouffer)."""
    from scipy.special import log_ndtr

    if hits.is_empty():
        return pl.DataFrame(schema=_SCHEMA)
    keys = ["query", "genome", "contig", "strand"]
    hits = hits.sort([*keys, "piece", "score"], descending=[False] * 5 + [True])
    chain_of = np.full(hits.height, -1, dtype=np.int64)
    groups = hits.select(keys).with_row_index("row").group_by(keys, maintain_order=True).agg(pl.col("row").min(), pl.len())
    piece, qs, ts, score = (hits[c].to_numpy() for c in ("piece", "query_start", "start", "score"))
    minus = (hits["strand"] == "-").to_numpy()
    n_chains = 0
    for group_start, size in groups.select("row", "len").iter_rows():
        rows = slice(group_start, group_start + size)
        n_chains = _chain_group(piece[rows], qs[rows], ts[rows], score[rows], bool(minus[group_start]), stride,
                                lookback, chain_of[rows], n_chains)
    loci = hits.with_columns(pl.Series("chain", chain_of)).group_by("chain").agg(
        *(pl.col(c).first() for c in keys),
        pl.col("query_start").min(), pl.col("query_end").max(), pl.col("start").min(), pl.col("end").max(),
        pl.col("score").mean(), pl.col("score").sum().alias("total"), pl.len().alias("windows"),
        (pl.col("z").sum() / pl.len().sqrt()).alias("z"), pl.col("ambiguous").all(),
    ).with_columns(pl.when(pl.col("ambiguous") & (pl.col("windows") == 1)).then(pl.lit("."))
                   .otherwise(pl.col("strand")).alias("strand")) \
        .sort(["query", "total", "windows", "chain"], descending=[False, True, True, False])
    loci = loci.filter(pl.Series(_primary(loci, k))).with_columns(pl.int_range(1, pl.len() + 1).over("query").alias("rank"))
    evalue = np.exp(log_ndtr(-loci["z"].to_numpy())) * searched
    return loci.with_columns(pl.Series("evalue", evalue), pl.col("windows").cast(pl.Int64),
                             pl.col("score").cast(pl.Float32)).select(LOCUS_COLUMNS)


def _chain_group(piece: np.ndarray, qs: np.ndarray, ts: np.ndarray, score: np.ndarray, minus: bool, stride: int,
                 lookback: int, out: np.ndarray, first: int) -> int:
    """Chain one query's hits on one contig and strand (sorted by piece), writing chain numbers from
    ``first`` into ``out``; returns the next free number."""
    n = len(piece)
    best, pred = score.astype(np.float64), np.full(n, -1, dtype=np.int64)
    lo = np.searchsorted(piece, piece - lookback, side="left")
    hi = np.searchsorted(piece, piece, side="left")
    for i in range(n):
        if lo[i] == hi[i]:
            continue
        j = np.arange(lo[i], hi[i])
        moved = (ts[i] - ts[j]) * (-1 if minus else 1)
        ok = np.abs(moved - (qs[i] - qs[j])) <= stride
        if ok.any():
            cand = j[ok][np.argmax(best[j[ok]])]
            best[i], pred[i] = score[i] + best[cand], cand
    used = np.zeros(n, dtype=bool)
    for i in np.argsort(-best, kind="stable"):
        if used[i]:
            continue
        while i >= 0 and not used[i]:
            used[i], out[i] = True, first
            i = pred[i]
        first += 1
    return first


def _primary(loci: pl.DataFrame, k: int) -> list[bool]:
    """Per query, in rank order, the loci that do not overlap a kept one on the same contig by half of
    the shorter, up to ``k``."""
    keep = []
    kept: dict[str, list[tuple[str, str, int, int]]] = {}
    for query, genome, contig, start, end in loci.select("query", "genome", "contig", "start", "end").iter_rows():
        mine = kept.setdefault(query, [])
        ok = len(mine) < k and not any(
            g == genome and c == contig and min(end, e) - max(start, s) >= 0.5 * min(end - start, e - s)
            for g, c, s, e in mine)
        if ok:
            mine.append((genome, contig, start, end))
        keep.append(ok)
    return keep

