"""``genembed evaluate``: does a model's embedding of a genome's windows carry more than composition?

On a sample of windows (a few thousand, at any genome size) the run's model is scored side by side
with baselines computed on the same windows: forward-strand 4-mer frequencies, strand-canonical
4-mer (TNF) and 6-mer frequencies, and GC content:

- neighbour: the overlapping next window (``stride`` bp further) found at top 1 / top 10 among the
  sampled windows that do not overlap the query;
- mutated copies: a window embedded after random substitutions (1%, 5%, 10%) plus small indels
  (a tenth as many events, 1-3 bp each) finds its original at top 1;
- strand: a window's reverse complement, embedded with the run's settings, finds the window at top 1;
- genome separation (several genomes): adjusted Rand index of k-means (k = genomes) against the
  genome labels (the DNABERT-S measure);
- divergence curve: 2-kb queries mutated at 0/10/20/30% (half reverse-complemented) find their
  source among the searched windows plus the grid windows over the sources, by the best score of
  any of their windows (embeddings and k-mer counts; no chaining, no alignment).

The sampled windows lie on the run's window grid: given the run's shards, their stored vectors are
searched (what the index holds), and only the queries are embedded.

Similarity is cosine, as in the index (GC: the closest GC fraction). Each estimate has a 95%
percentile-bootstrap interval over the query windows.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import numpy as np
import polars as pl

from genembed.errors import GenembedError
from genembed.data.genome import Genome
from genembed.encode.tokenize import reverse_complement
from genembed.data.vectors import normalise
from genembed.reports.stats import interval, verdict
from genembed.data.windows import canonical_kmer_frequencies, gc_content, kmer_frequencies, mutate, n_fraction
from genembed.encode.scan import Scanner, sequence_embedder

if TYPE_CHECKING:
    from genembed.search.align import Aligner
    from genembed.data.layout import GenomeInputs
    from genembed.encode.plan import RunPlan

log = logging.getLogger(__name__)
Embed = Callable[[Sequence[bytes]], np.ndarray]
Scan = Callable[[bytes, np.ndarray, int], np.ndarray]  # (sequence, window starts, size) -> vectors
RESULT_SCHEMA = {"measure": pl.String, "method": pl.String, "estimate": pl.Float64, "low": pl.Float64,
                 "high": pl.Float64, "n": pl.Int64}
COMPARISON_SCHEMA = {"measure": pl.String, "baseline": pl.String, "difference": pl.Float64, "low": pl.Float64,
                     "high": pl.Float64, "verdict": pl.String}


@dataclass(frozen=True)
class EvalSettings:
    """How many anchor windows (shared among genomes), which mutation rates, bootstrap resamples."""

    windows: int = 2000
    mutation_rates: tuple[float, ...] = (0.01, 0.05, 0.10)
    divergence_queries: int = 200  # 2-kb queries of the divergence curve (0: none)
    divergence_rates: tuple[float, ...] = (0.0, 0.10, 0.20, 0.30)
    query_bp: int = 2000
    loci_windows: int = 50_000  # grid windows the divergence curve's locus search (as genembed query) searches (0: off)
    loci_depth: int = 50  # hits per query piece it chains (genembed query: DEEP_HITS, 200, 2.5x slower here; 50 finds
    #                       fewer diverged copies: the default model 0.695 against 0.78 at 30%)
    loci_baselines: tuple[str, ...] = ()  # k-mer baselines it also ranks (canonical 6-mers: 17 s more on the example)
    indel_share: float = 0.1
    bootstrap: int = 1000
    seed: int = 0

    def __post_init__(self) -> None:
        if self.windows < 10:
            raise GenembedError(f"evaluate needs at least 10 windows, not {self.windows}")
        if not all(0 <= r < 1 for r in (*self.mutation_rates, *self.divergence_rates)):
            raise GenembedError(f"mutation rates must lie in [0, 1), not {self.mutation_rates} / {self.divergence_rates}")
        if self.divergence_queries < 0 or self.query_bp < 100:
            raise GenembedError("evaluate: divergence_queries must be 0 or more and query_bp at least 100")


@dataclass
class Sample:
    """Sampled windows: ``table`` (genome, contig, start, end) and ``seqs`` are the searched set;
    ``anchors`` and ``nexts`` are rows of it (each anchor and its overlapping next window)."""

    table: pl.DataFrame
    seqs: list[bytes]
    anchors: np.ndarray
    nexts: np.ndarray
    tails: list[bytes]  # each anchor with up to ``margin`` bases after it (room for deletions)


def sample_windows(genomes: Mapping[str, Genome], size: int, stride: int, n: int, max_n_fraction: float = 0.1,
                   seed: int = 0, margin: int = 32) -> Sample:
    """``n`` anchor windows on the run's window grid, shared equally among genomes, each with the
    next window (``stride`` further on); windows over the N limit are skipped, as the run skips them."""
    rng = np.random.default_rng(seed)
    keys: dict[tuple[str, str, int], int] = {}
    rows: list[tuple[str, str, int]] = []
    seqs: list[bytes] = []
    anchors: list[int] = []
    nexts: list[int] = []
    tails: list[bytes] = []

    def add(genome: str, contig: str, start: int, seq: bytes) -> int:
        key = (genome, contig, start)
        if key not in keys:
            keys[key] = len(rows)
            rows.append(key)
            seqs.append(seq)
        return keys[key]

    per_genome = max(1, n // len(genomes))
    for name, g in genomes.items():
        contigs = [(c, (length - size - stride) // stride + 1) for c, length in g.contigs.items()
                   if length >= size + stride]
        total = sum(k for _, k in contigs)
        if total == 0:
            log.warning("evaluate: %s skipped: no contig holds two windows of %d bp %d bp apart", name, size, stride)
            continue
        bounds = np.cumsum([k for _, k in contigs])
        picked = 0
        for flat in rng.permutation(total):
            if picked == per_genome:
                break
            ci = int(np.searchsorted(bounds, flat, side="right"))
            contig = contigs[ci][0]
            start = int(flat - (bounds[ci - 1] if ci else 0)) * stride
            hi = min(g.contigs[contig], start + stride + size + margin)
            block = g.fetch(contig, start, hi)
            first, second = block[:size], block[stride : stride + size]
            if max(n_fraction(first), n_fraction(second)) > max_n_fraction:
                continue
            anchors.append(add(name, contig, start, first))
            nexts.append(add(name, contig, start + stride, second))
            tails.append(block[: size + margin])
            picked += 1
    if len(anchors) < 10:
        raise GenembedError(f"evaluate: only {len(anchors)} windows of {size} bp with a next window {stride} bp on and"
                            f" at most {max_n_fraction:.0%} N in {', '.join(genomes)}; at least 10 are needed")
    table = pl.DataFrame(rows, schema={"genome": pl.String, "contig": pl.String, "start": pl.Int64}, orient="row")
    table = table.with_columns((pl.col("start") + size).alias("end"))
    log.info("evaluate: %d anchor windows, %d windows searched, %d genomes", len(anchors), len(rows), len(genomes))
    return Sample(table, seqs, np.asarray(anchors), np.asarray(nexts), tails)


@dataclass
class Divergence:
    """The divergence curve's set-up: queries cut from ``sources`` (genome, contig, start) of
    ``query_bp`` bp (``originals``), mutated at each rate and every second one reverse-complemented; the
    extra searched windows (``table``, ``seqs``: the grid windows over the sources) joined to the sample's;
    ``right[i]``: the searched rows overlapping source ``i`` by at least half a window. A window elsewhere
    that holds a copy of the source (a repeat) is as right (:func:`is_copy`)."""

    queries: dict[float, list[bytes]]
    table: pl.DataFrame
    seqs: list[bytes]
    right: list[np.ndarray]
    sources: list[tuple[str, str, int]]
    originals: list[bytes]


def divergence_setup(genomes: Mapping[str, Genome], sample: Sample, size: int, stride: int,
                     settings: EvalSettings) -> Divergence | None:
    """Sources, queries and extra windows of the divergence curve (None when it is off or no contig
    is long enough)."""
    rng = np.random.default_rng(settings.seed + 3)
    q = settings.query_bp
    rates = settings.divergence_rates
    margin = 32 + int(6 * np.sqrt(q * max(rates, default=0) * settings.indel_share * 5))  # room for deletions
    regions = [(name, c, n) for name, g in genomes.items() for c, n in g.contigs.items() if n >= q + margin]
    if not settings.divergence_queries or not regions:
        return None
    weights = np.array([n - q - margin + 1 for _, _, n in regions], dtype=float)
    sources, tails = [], []
    for _ in range(20 * settings.divergence_queries):
        if len(sources) == settings.divergence_queries:
            break
        name, contig, n = regions[int(rng.choice(len(regions), p=weights / weights.sum()))]
        start = int(rng.integers(0, n - q - margin + 1))
        tail = genomes[name].fetch(contig, start, start + q + margin)
        if n_fraction(tail[:q]) <= 0.01:
            sources.append((name, contig, start))
            tails.append(tail)
    queries = {}
    for rate in settings.divergence_rates:
        made = [mutate(t, q, rate, settings.indel_share, rng) for t in tails]
        queries[rate] = [reverse_complement(m) if i % 2 else m for i, m in enumerate(made)]
    rows, seqs = [], []
    for name, contig, start in sources:  # the grid windows over each source
        first = max(0, (start - size // 2) // stride * stride + stride)
        for w in range(first, start + q - size // 2 + 1, stride):
            if w + size <= genomes[name].contigs[contig]:
                rows.append((name, contig, w))
                seqs.append(genomes[name].fetch(contig, w, w + size))
    table = pl.DataFrame(rows, schema={"genome": pl.String, "contig": pl.String, "start": pl.Int64}, orient="row")
    table = table.with_columns((pl.col("start") + size).alias("end"))
    every = pl.concat([sample.table, table])
    right = []
    for name, contig, start in sources:
        overlap = np.minimum(every["end"].to_numpy(), start + q) - np.maximum(every["start"].to_numpy(), start)
        right.append(np.flatnonzero((every["genome"] == name).to_numpy() & (every["contig"] == contig).to_numpy()
                                    & (overlap >= size // 2)))
    return Divergence(queries, table, seqs, right, sources, [t[:q] for t in tails])


def is_copy(window: bytes, original: bytes, k: int, identity: float = 0.95, aligner: "Aligner | None" = None) -> bool:
    """Whether ``window`` holds a copy of part of ``original``: its best local alignment on either strand
    (BLASTN's scores) has at least ``k`` matches at ``identity`` or more. A hit on a repeat of a query's
    source is then a right answer, as it is for an aligner."""
    from genembed.search.align import Aligner, cigar_counts

    aligner = aligner or Aligner()
    window, original = window.upper(), original.upper()
    for target in (original, reverse_complement(original)):
        matches, mismatches, _, gaps = cigar_counts(aligner.align(window, target)[5])
        if matches >= k and matches >= identity * (matches + mismatches + gaps):
            return True
    return False


@dataclass
class Grid:
    """Every window of the run's grid on the genomes' contigs (up to a cap): what ``genembed query``
    searches, so that its locus ranking can be measured (:func:`divergence_loci`)."""

    table: pl.DataFrame  # genome, contig, start, end
    seqs: list[bytes]


def grid_windows(genomes: Mapping[str, Genome], size: int, stride: int, cap: int, first: set[tuple[str, str]],
                 max_n_fraction: float, seed: int) -> Grid:
    """The grid windows of whole contigs, the ``first`` (genome, contig) pairs first and the others in a
    seeded random order, until ``cap`` windows; windows over the N limit are left out, as the run leaves them."""
    contigs = [(name, c, n) for name, g in genomes.items() for c, n in g.contigs.items() if n >= size]
    order = np.random.default_rng(seed + 4).permutation(len(contigs))
    order = sorted(order, key=lambda i: (contigs[i][0], contigs[i][1]) not in first)  # stable: sources' contigs first
    rows, seqs = [], []
    for i in order:
        name, contig, n = contigs[i]
        starts = list(range(0, n - size + 1, stride))
        if len(rows) + len(starts) > cap:
            continue
        whole = genomes[name].fetch(contig, 0, n)
        for w in starts:
            seq = whole[w : w + size]
            if n_fraction(seq) <= max_n_fraction:
                rows.append((name, contig, w))
                seqs.append(seq)
    table = pl.DataFrame(rows, schema={"genome": pl.String, "contig": pl.String, "start": pl.Int64}, orient="row")
    return Grid(table.with_columns((pl.col("start") + size).alias("end")), seqs)


def divergence_loci(div: Divergence, cut_pieces: Pieces, grid: Grid, db: np.ndarray, size: int, stride: int,
                    query_bp: int, depth: int = 200) -> dict[float, np.ndarray]:
    """Per rate, 1 where a query's top locus overlaps its source by half a window (or one of its windows
    is a copy of the source: :func:`is_copy`), loci ranked as
    ``genembed query`` ranks them without alignment: each query piece's ``depth`` best windows
    of the grid (the ``PIECE_HITS`` best counted alone), chained along a diagonal on either strand
    (:func:`genembed.search.loci.chain`), by summed cosine. Sources whose contig the grid lacks count as misses."""
    from genembed.search.loci import chain
    from genembed.search.query import PIECE_HITS

    from genembed.search.align import Aligner

    aligner = Aligner()
    db = normalise(np.asarray(db, dtype=np.float32))
    depth = min(depth, len(db))
    genome, contig = grid.table["genome"].to_numpy(), grid.table["contig"].to_numpy()
    start, end = grid.table["start"].to_numpy(), grid.table["end"].to_numpy()
    out = {}
    for rate, queries in div.queries.items():
        cut, x = cut_pieces[rate]
        scores = x @ db.T
        top = np.argpartition(-scores, depth - 1, axis=1)[:, :depth] if depth < len(db) else np.tile(np.arange(len(db)), (len(cut), 1))
        order = np.argsort(-np.take_along_axis(scores, top, 1), axis=1)
        top = np.take_along_axis(top, order, 1)
        piece = np.repeat(np.arange(len(cut)), depth)
        w = top.ravel()
        hits = pl.DataFrame({
            "query": [str(cut[j][0]) for j in piece], "piece": piece, "query_start": [cut[j][1] for j in piece],
            "query_end": [cut[j][2] for j in piece], "genome": genome[w], "contig": contig[w], "start": start[w],
            "end": end[w], "score": scores[piece, w].astype(np.float32), "rank": np.tile(np.arange(1, depth + 1), len(cut)),
        })
        hits = pl.concat([hits.with_columns(pl.lit(s).alias("strand")) for s in "+-"]).with_columns(
            pl.col("score").alias("x"), pl.lit(True).alias("ambiguous"))
        per_query = np.bincount([c[0] for c in cut], minlength=len(queries))
        tests = {str(i): 2 * int(n) for i, n in enumerate(per_query)}  # windows searched: pieces x strands
        best = chain(hits, size, stride, 1, tests, lone_rank=min(PIECE_HITS, depth)).filter(pl.col("rank") == 1)
        found = np.zeros(len(queries))
        for row in best.iter_rows(named=True):  # one aligner (its scoring matrix) for the repeats checked here
            i = int(row["query"])
            name, ctg, s0 = div.sources[i]
            overlap = min(row["end"], s0 + query_bp) - max(row["start"], s0)
            inside = np.flatnonzero((genome == row["genome"]) & (contig == row["contig"])
                                    & (start >= row["start"]) & (end <= row["end"]))
            found[i] = float((row["genome"] == name and row["contig"] == ctg and overlap >= size // 2)
                             or any(is_copy(grid.seqs[w], div.originals[i], size // 2, aligner=aligner) for w in inside))
        out[rate] = found
    return out


Pieces = dict[float, tuple[list[tuple[int, int, int]], np.ndarray]]


def divergence_pieces(div: Divergence, featurize: Callable[[Sequence[bytes]], np.ndarray], size: int,
                      stride: int, scan: Scan | None = None) -> Pieces:
    """Per rate, the queries cut into pieces of ``size`` bp every ``stride`` ((query, start, end)) and
    their unit vectors: featurized once for both rankings. With ``scan`` (the run's model,
    :class:`genembed.encode.scan.Scanner`), the overlapping pieces of all queries come from one pass along
    the queries laid end to end: each piece lies inside its query and the scan gives exactly the
    vector of embedding it alone, for about half the work."""
    from genembed.search.loci import pieces

    out = {}
    for rate, queries in div.queries.items():
        cut = [(i, a, b) for i, seq in enumerate(queries) for a, b in pieces(len(seq), size, stride)]
        if scan is not None and cut and all(b - a == size for _, a, b in cut):
            at = np.cumsum([0] + [len(q) for q in queries])
            vectors = scan(b"".join(queries), np.array([at[i] + a for i, a, _ in cut]), size)
        else:
            vectors = featurize([queries[i][a:b] for i, a, b in cut])
        out[rate] = cut, normalise(np.asarray(vectors, dtype=np.float32))
    return out


def divergence_hits(div: Divergence, db: np.ndarray, cut_pieces: Pieces, extra: np.ndarray,
                    seqs: Sequence[bytes]) -> dict[float, np.ndarray]:
    """Per rate, 1 where a query's best window (its pieces, each scored against every searched
    window: ``db`` and the grid windows over the sources, ``extra``, whose sequences are ``seqs``; a
    window's score is its best piece's) overlaps its source, or is a copy of it (:func:`is_copy`)."""
    from genembed.search.align import Aligner

    out, aligner = {}, Aligner()
    db = normalise(np.concatenate([db, extra]))
    for rate, queries in div.queries.items():
        cut, x = cut_pieces[rate]
        owner = np.array([i for i, _, _ in cut])
        scores = x @ db.T
        best = np.full((len(queries), len(db)), -np.inf)
        np.maximum.at(best, owner, scores)
        top = best.argmax(1)
        out[rate] = np.array([float(np.isin(top[i], div.right[i])
                                    or is_copy(seqs[top[i]], div.originals[i], len(seqs[top[i]]) // 2, aligner=aligner))
                              for i in range(len(queries))])
    return out


#: composition baselines scored on the same windows: forward-strand 4-mers, the strand-canonical
#: 4-mers of metagenome binning (TNF) and canonical 6-mers (strand-invariant, as the default model is), GC
BASELINES: dict[str, Callable[[Sequence[bytes]], np.ndarray]] = {
    "4-mer": kmer_frequencies,
    "canonical 4-mer": lambda seqs: canonical_kmer_frequencies(seqs, 4),
    "canonical 6-mer": lambda seqs: canonical_kmer_frequencies(seqs, 6),
    "GC": gc_content,
}
KMER_BASELINES = ("4-mer", "canonical 4-mer", "canonical 6-mer")


def similarity(method: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    """Cosine for vectors; for GC (one value per window) the negative GC difference."""
    if method == "GC":
        return lambda q, db: -np.abs(q[:, :1] - db[:, 0][None, :])
    return lambda q, db: normalise(q) @ normalise(db).T


def hit_rates(scores: np.ndarray, targets: np.ndarray, ks: Sequence[int],
              exclude: np.ndarray | None = None) -> dict[int, np.ndarray]:
    """Per query, the chance that its target is among the top ``k`` of ``scores`` (rows = queries),
    ties broken at random; ``exclude`` marks candidates that do not count."""
    scores = np.array(scores, dtype=np.float64)
    rows = np.arange(len(targets))
    if exclude is not None:
        scores[exclude] = -np.inf
    target = scores[rows, targets]
    greater = (scores > target[:, None]).sum(1)
    ties = (scores == target[:, None]).sum(1) - 1
    return {k: np.clip((k - greater) / (ties + 1), 0, 1) for k in ks}


def adjusted_rand(x: np.ndarray, labels: np.ndarray, method: str, seed: int) -> np.ndarray:
    """Clusters of k-means (k = number of labels; on L2-normalised vectors, spherical as in the
    cluster report; GC on its one value), to be scored against ``labels`` by the adjusted Rand index."""
    from sklearn.cluster import KMeans

    k = len(np.unique(labels))
    data = x if method == "GC" else normalise(x)
    return KMeans(k, n_init=10, random_state=seed).fit_predict(data)


def evaluate(genomes: Mapping[str, Genome], embed: Embed, size: int, stride: int,
             settings: EvalSettings = EvalSettings(), max_n_fraction: float = 0.1,
             stored: Sequence["GenomeInputs"] = (), scan: Scan | None = None) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The evaluate tables: per measure and method the estimate with a 95% interval; and per
    measure the paired difference of the embeddings from each baseline (same resamples). With the
    run's shards (``stored``), the sampled windows' stored vectors are searched; windows they lack
    are embedded. ``scan``: the run's model along a sequence (:meth:`genembed.encode.scan.Scanner.for_plan`),
    for the divergence queries' overlapping pieces."""
    from sklearn.metrics import adjusted_rand_score

    # room after each anchor for the bases that deletions pull in (about 6 standard deviations of the net length change)
    margin = 32 + int(6 * np.sqrt(size * max(settings.mutation_rates) * settings.indel_share * 5))
    sample = sample_windows(genomes, size, stride, settings.windows, max_n_fraction, settings.seed, margin)
    rng = np.random.default_rng(settings.seed + 1)
    anchors = [sample.seqs[i] for i in sample.anchors]
    queries: dict[str, list[bytes]] = {
        f"mutated {rate * 100:g}%": [mutate(t, size, rate, settings.indel_share, rng) for t in sample.tails]
        for rate in settings.mutation_rates
    }
    queries["reverse complement"] = [reverse_complement(s) for s in anchors]
    features: dict[str, Callable[[Sequence[bytes]], np.ndarray]] = {"embeddings": embed, **BASELINES}
    # windows that overlap an anchor, other than its next window, are not candidates for the neighbour
    overlap = _overlaps(sample.table, sample.anchors)
    overlap[np.arange(len(sample.anchors)), sample.nexts] = False
    labels = sample.table["genome"].to_numpy()
    div = divergence_setup(genomes, sample, size, stride, settings)
    grid = None
    if div is not None and settings.loci_windows:
        grid = grid_windows(genomes, size, stride, settings.loci_windows, {(n, c) for n, c, _ in div.sources},
                            max_n_fraction, settings.seed)
        log.info("evaluate: %d grid windows for the locus search", grid.table.height)
    values: dict[str, dict[str, np.ndarray]] = {}  # measure -> method -> per-query hits
    clusters: dict[str, np.ndarray] = {}
    for method, featurize in features.items():
        db = _stored_or_embedded(stored, sample, embed) if stored and method == "embeddings" else featurize(sample.seqs)
        if not np.isfinite(db).all():
            raise GenembedError(f"evaluate: the {method} of {int((~np.isfinite(db).all(1)).sum())} sampled windows are not"
                                " finite (NaN or inf; an fp16 overflow?): try embed.precision fp32 or bf16")
        sim = similarity(method)
        for k, hits in hit_rates(sim(db[sample.anchors], db), sample.nexts, (1, 10), overlap).items():
            values.setdefault(f"neighbour top-{k}", {})[method] = hits
        for measure, seqs in queries.items():
            values.setdefault(f"{measure} top-1", {})[method] = hit_rates(sim(featurize(seqs), db), sample.anchors, (1,))[1]
        if div is not None and method != "GC":  # the divergence curve: embeddings and k-mer counts
            cut_pieces = divergence_pieces(div, featurize, size, stride, scan if method == "embeddings" else None)
            extra = (_stored_or_embedded(stored, div, embed) if stored and method == "embeddings"
                     else featurize(div.seqs))  # the grid windows over the sources: the run's own where it has them
            for rate, hits in divergence_hits(div, db, cut_pieces, extra, [*sample.seqs, *div.seqs]).items():
                values.setdefault(f"{settings.query_bp / 1000:g}-kb query mutated {rate:.0%} top-1", {})[method] = hits
            if grid is not None and grid.table.height and (method == "embeddings" or method in settings.loci_baselines):
                vectors = (_stored_or_embedded(stored, grid, embed) if stored and method == "embeddings"
                           else featurize(grid.seqs))
                for rate, hits in divergence_loci(div, cut_pieces, grid, vectors, size, stride, settings.query_bp,
                                                     settings.loci_depth).items():
                    values.setdefault(f"{settings.query_bp / 1000:g}-kb query mutated {rate:.0%}, loci top-1",
                                      {})[method] = hits
        if len(np.unique(labels)) > 1:
            clusters[method] = adjusted_rand(db, labels, method, settings.seed)
        log.info("evaluate: %s scored", method)
    boot = np.random.default_rng(settings.seed + 2)
    rows, diffs = [], []

    def add(measure: str, point: dict[str, float], draws: dict[str, np.ndarray], n: int) -> None:
        for method in (m for m in features if m in point):
            rows.append((measure, method, point[method], *interval(draws[method]), n))
        for base in (b for b in BASELINES if b in point):
            lo, hi = interval(draws["embeddings"] - draws[base])
            diffs.append((measure, base, point["embeddings"] - point[base], lo, hi, verdict(lo, hi)))

    for measure, per_method in values.items():
        n = len(next(iter(per_method.values())))
        pick = boot.integers(0, n, (settings.bootstrap, n))
        add(measure, {m: float(v.mean()) for m, v in per_method.items()},
            {m: v[pick].mean(1) for m, v in per_method.items()}, n)
    if clusters:
        n = len(labels)
        picks = boot.integers(0, n, (min(settings.bootstrap, 200), n))
        add("genome ARI", {m: float(adjusted_rand_score(labels, c)) for m, c in clusters.items()},
            {m: np.array([adjusted_rand_score(labels[i], c[i]) for i in picks]) for m, c in clusters.items()}, n)
    return (pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row"),
            pl.DataFrame(diffs, schema=COMPARISON_SCHEMA, orient="row"))


def _stored_or_embedded(stored: Sequence["GenomeInputs"], sample: "Sample | Grid", embed: Embed) -> np.ndarray:
    """The sampled (or grid) windows' vectors from the run's shards; the few the run dropped are embedded."""
    vectors, found = stored_vectors(stored, sample.table)
    missing = np.flatnonzero(~found)
    log.info("evaluate: %d sampled windows read from the run's shards, %d embedded", found.sum(), len(missing))
    if vectors is None:
        return embed(sample.seqs)
    if len(missing):
        vectors[missing] = embed([sample.seqs[i] for i in missing])
    return vectors


def stored_vectors(genomes: Sequence["GenomeInputs"], table: pl.DataFrame) -> tuple[np.ndarray | None, np.ndarray]:
    """Stored vectors (float32) of windows named by ``genome``, ``contig`` and ``start``, and which of
    them the shards hold; None when they hold none."""
    from genembed.data.io import read_table
    from genembed.data.store import read_rows

    wanted = table.select("genome", "contig", "start").with_row_index("row")
    found = np.zeros(table.height, dtype=bool)
    out: np.ndarray | None = None
    for g in genomes:
        mine = wanted.filter(pl.col("genome") == g.name)
        for windows, shard in zip(g.windows, g.shards) if mine.height else ():
            held = read_table(windows, ["contig", "start"]).with_row_index("at")
            hit = mine.join(held, on=["contig", "start"], how="inner").sort("at")
            if hit.height:  # a window named twice (sources that overlap) is read once
                at, back = np.unique(hit["at"].to_numpy(), return_inverse=True)
                vectors = read_rows(shard, at)[back]
                if out is None:
                    out = np.zeros((table.height, vectors.shape[1]), dtype=np.float32)
                out[hit["row"].to_numpy()] = vectors
                found[hit["row"].to_numpy()] = True
    return out, found


def _overlaps(table: pl.DataFrame, rows: np.ndarray) -> np.ndarray:
    """``[len(rows), len(table)]``: True where a window overlaps window ``rows[i]`` (itself included)."""
    genome = table["genome"].to_numpy()
    contig = table["contig"].to_numpy()
    start = table["start"].to_numpy()
    end = table["end"].to_numpy()
    same = (genome[rows][:, None] == genome[None, :]) & (contig[rows][:, None] == contig[None, :])
    return same & (start[rows][:, None] < end[None, :]) & (start[None, :] < end[rows][:, None])


def promoter_rows(metrics_tsv: str | Path, comparison_tsv: str | Path | None = None
                  ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The promoter report's ROC-AUC and PR-AUC (``metrics.tsv``, and its paired comparison) as
    rows of the evaluate tables."""
    names = {"embeddings": "embeddings", "GC content": "GC"}
    try:
        metrics = pl.read_csv(metrics_tsv, separator="\t")
        comparison = pl.read_csv(comparison_tsv, separator="\t") if comparison_tsv else None
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise GenembedError(f"{metrics_tsv}: cannot read the promoter report's tables ({exc})".splitlines()[0]) from None
    rows, diffs = [], []
    for r in metrics.iter_rows(named=True):
        method = names.get(r["model"], "4-mer" if r["model"].startswith("4-mer") else r["model"])
        for m, label in (("roc_auc", "ROC-AUC"), ("pr_auc", "PR-AUC")):
            rows.append((f"promoter {label}", method, r[m], r[f"{m}_lo"], r[f"{m}_hi"], r["test_windows"]))
    for r in (comparison.iter_rows(named=True) if comparison is not None else []):
        if r["metric"] in ("roc_auc", "pr_auc"):
            base = names.get(r["baseline"], "4-mer" if r["baseline"].startswith("4-mer") else r["baseline"])
            label = "ROC-AUC" if r["metric"] == "roc_auc" else "PR-AUC"
            diffs.append((f"promoter {label}", base, r["difference"], r["lo"], r["hi"], r["embeddings_are"]))
    return (pl.DataFrame(rows, schema=RESULT_SCHEMA, orient="row"),
            pl.DataFrame(diffs, schema=COMPARISON_SCHEMA, orient="row"))


def wide(results: pl.DataFrame) -> pl.DataFrame:
    """One row per measure, one "estimate (low-high)" column per method."""
    text = results.with_columns(pl.format("{} ({}-{})", *(pl.col(c).round(3) for c in ("estimate", "low", "high")))
                                .alias("value"))
    return text.pivot(on="method", index="measure", values="value", maintain_order=True)


def summary(comparison: pl.DataFrame) -> list[str]:
    """Plain sentences: against each k-mer baseline, where the embeddings win and where they lose."""
    out = []
    for base in KMER_BASELINES:
        rows = comparison.filter(pl.col("baseline") == base)
        for said, words in (("better", "beat"), ("worse", "are worse than"), ("no clear difference", "are not clearly different from")):
            measures = rows.filter(pl.col("verdict") == said)["measure"].to_list()
            if measures:
                out.append(f"The embeddings {words} {base} counts at: {', '.join(measures)}.")
    gc = comparison.filter((pl.col("baseline") == "GC") & (pl.col("verdict") != "better"))["measure"].to_list()
    if gc:
        out.append(f"GC content alone is as good or better at: {', '.join(gc)}.")
    return out


def write_report(results: pl.DataFrame, comparison: pl.DataFrame, out_dir: str | Path, about: str) -> Path:
    """``evaluate.tsv``, ``comparison.tsv``, ``evaluate.png`` and a self-contained ``evaluate.html`` in ``out_dir``."""
    from genembed.data.io import atomic_path
    from genembed.reports.html import esc, page, save_figure, table

    out = Path(out_dir)
    for name, df in (("evaluate.tsv", results), ("comparison.tsv", comparison)):
        with atomic_path(out / name) as tmp:
            df.write_csv(tmp, separator="\t", float_precision=4)
    worse = comparison.filter(pl.col("baseline").is_in(KMER_BASELINES) & (pl.col("verdict") != "better")).height > 0
    verdict = "".join(f"<p>{esc(s)}</p>" for s in summary(comparison))
    sections = [
        ("Summary", f"<div class='{'note' if worse else 'good'}'>{verdict}</div>"),
        ("Measures (estimate, 95% interval)", save_figure(_figure(results), out / "evaluate.png") + table(wide(results))),
        ("Embeddings minus each baseline (paired bootstrap)", table(comparison)),
        ("Method", f"<p>{esc(about)}</p><p class='muted'>{esc(METHOD)}</p>"),
    ]
    page("genembed evaluate: embeddings against k-mer counts and GC", sections, out / "evaluate.html")
    return out / "evaluate.html"


def _figure(results: pl.DataFrame):
    """Grouped bars: one group per measure, one bar per method, 95% intervals as error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    measures = results["measure"].unique(maintain_order=True).to_list()
    methods = results["method"].unique(maintain_order=True).to_list()
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(measures) * len(methods) + 1))
    height = 0.8 / len(methods)
    colors = {"embeddings": "#1f77b4", "4-mer": "#ff7f0e", "canonical 4-mer": "#2ca02c", "canonical 6-mer": "#9467bd",
              "GC": "#7f7f7f"}
    for j, method in enumerate(methods):
        part = results.filter(pl.col("method") == method)
        est = dict(zip(part["measure"], part["estimate"]))
        lo, hi = dict(zip(part["measure"], part["low"])), dict(zip(part["measure"], part["high"]))
        ys = [i + j * height for i in range(len(measures))]
        vals = [est.get(m, np.nan) for m in measures]
        err = [[max(0.0, est.get(m, np.nan) - lo.get(m, np.nan)) for m in measures],
               [max(0.0, hi.get(m, np.nan) - est.get(m, np.nan)) for m in measures]]
        ax.barh(ys, vals, height=height, xerr=np.nan_to_num(err), label=method, color=colors.get(method), capsize=2)
    ax.set_yticks([i + 0.4 - height / 2 for i in range(len(measures))], measures)
    ax.invert_yaxis()
    ax.set_xlim(min(0.0, float(results["estimate"].min())), 1.0)
    ax.set_xlabel("hit rate / ARI / AUC (95% interval)")
    ax.legend(loc="lower right", fontsize=8)
    return fig


METHOD = (
    "Anchor windows are sampled on the run's window grid, equally from each genome, each with its overlapping next "
    "window; together they form the searched set. Neighbour: the next window among the searched windows that do not "
    "overlap the anchor (top 1 / top 10). Mutated copies: the anchor with random substitutions at the given rate and "
    "1-3 bp indels at a tenth of it, found back at top 1 among all searched windows. Reverse complement: embedded "
    "with the run's settings, found back at top 1. Genome ARI: k-means with k = genomes on the searched windows "
    "against their genome labels. Similarity is cosine (as in the index); for GC, the closest GC fraction. Ties are "
    "broken at random (expected hit rate). Intervals are 95% percentile bootstraps over anchors (windows for ARI); "
    "differences are paired (same resamples). Divergence curve: 2-kb pieces of the genomes at random offsets, mutated "
    "at each rate (substitutions plus indels at a tenth of it), every second one reverse-complemented, cut into "
    "windows of the run's size and stride; each searched window (the sample plus the grid windows over the sources) "
    "scores as its best query piece, and the query is right when its best window overlaps its source by half a "
    "window, or aligns to it over half a window at 95% identity or more, on either strand (a repeat of the source is "
    "as right, as for an aligner; the embeddings' ranking alone, no chaining or alignment). Loci: the same queries searched as genembed "
    "query ranks loci without alignment: each piece's 200 best windows of the run's grid (whole contigs, up to "
    "50,000 windows), hits chained along a diagonal on either strand, the top locus by summed cosine; right when it "
    "overlaps the source by half a window or holds a copy of it. 4-mer counts are frequencies of the 256 4-mers of the forward strand; "
    "canonical 4-mer and 6-mer counts add each k-mer to its reverse complement (136 and 2,080 columns), so they are "
    "strand-invariant, as the default model is."
)


def evaluate_model(fastas: Mapping[str, str | Path], plan: RunPlan, out_dir: str | Path,
                   settings: EvalSettings = EvalSettings(), promoter_dir: str | Path | None = None,
                   stored: Sequence["GenomeInputs"] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Stage: :func:`measure_model`, then :func:`report_model` (the CLI's one step)."""
    results, comparison = measure_model(fastas, plan, settings, stored)
    return report_model(results, comparison, plan, settings, list(fastas), out_dir, promoter_dir)


def measure_model(fastas: Mapping[str, str | Path], plan: RunPlan, settings: EvalSettings = EvalSettings(),
                  stored: Sequence["GenomeInputs"] = ()) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The evaluate tables (:func:`evaluate`) of a run's model and settings (its plan) on prepared
    genomes (``name -> bgzip FASTA``; with ``stored``, the run's shards, whose vectors are searched)."""
    genomes = {name: Genome(Path(path)) for name, path in fastas.items()}
    w = plan.windows
    try:
        scan = Scanner.for_plan(plan)
        embed = sequence_embedder(plan, scan)
        return evaluate(genomes, embed, w.size, w.stride, settings, w.max_n_fraction, stored, scan)
    finally:
        for g in genomes.values():
            g.close()


def write_measures(results: pl.DataFrame, comparison: pl.DataFrame, measures: str | Path, compared: str | Path) -> None:
    """:func:`measure_model`'s tables as Parquet (each written atomically), for :func:`read_measures`."""
    from genembed.data.io import atomic_path

    for df, path in ((results, measures), (comparison, compared)):
        with atomic_path(path) as tmp:
            df.write_parquet(tmp)


def read_measures(measures: str | Path, compared: str | Path) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The tables :func:`write_measures` wrote, checked against the evaluate schemas."""
    out = []
    for path, schema in ((measures, RESULT_SCHEMA), (compared, COMPARISON_SCHEMA)):
        try:
            df = pl.read_parquet(path)
        except (OSError, pl.exceptions.PolarsError) as exc:
            raise GenembedError(f"{path}: cannot read evaluate's measures ({exc})".splitlines()[0]) from None
        if dict(df.schema) != dict(schema):
            raise GenembedError(f"{path}: not evaluate's measures (columns {list(df.columns)})")
        out.append(df)
    return out[0], out[1]


def report_model(results: pl.DataFrame, comparison: pl.DataFrame, plan: RunPlan, settings: EvalSettings,
                 genomes: Sequence[str], out_dir: str | Path, promoter_dir: str | Path | None = None
                 ) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Write the evaluate report of :func:`measure_model`'s tables, with the promoter report's metrics
    when ``promoter_dir`` holds them (the workflow measures without waiting for the promoter report)."""
    if promoter_dir is not None and (Path(promoter_dir) / "metrics.tsv").is_file():
        extra, extra_cmp = promoter_rows(Path(promoter_dir) / "metrics.tsv", Path(promoter_dir) / "comparison.tsv")
        results, comparison = pl.concat([results, extra]), pl.concat([comparison, extra_cmp])
    w, e = plan.windows, plan.embed
    about = (f"Model {plan.source} ({plan.tokenizer.describe()} tokens, {e.pooling} pooling, layer {e.layer},"
             f" strands {e.strands}); windows of {w.size} bp every {w.stride} bp; "
             f"{settings.windows:,} anchor windows from {', '.join(genomes)}; seed {settings.seed}.")
    write_report(results, comparison, out_dir, about)
    return results, comparison
