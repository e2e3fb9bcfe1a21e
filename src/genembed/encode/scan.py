"""Dense scans and overlapping windows: the pooled embedding of windows of one size at many starts
along a sequence, equal to embedding each window on its own.

For most models every window is embedded on its own. A model whose hidden state at a position
depends only on the bases within ``receptive_field`` of it (genembed-conv: convolutions, no
attention) is run once along the sequence instead, and again only on each window's edges, where a
window's own boundary changes the states: a window's mean is then the sum of the sequence's states
strictly inside it plus its two edges' sums (an edge computed as a trapezoid where the model has
``edge_states``: each layer only where the edge depends on it). Windows 100 bp apart (the promoter
track) cost about 1.5 passes over the sequence instead of five; a run's windows, 500 bp every 250 bp,
1.2 instead of two; both together (:func:`scan_with_track`, a pack's job) 1.65 instead of seven.
This needs one token per base (a k-mer tokenizer with ``k = 1``, no start or end token), mean pooling,
and one strand (or a model that is reverse-complement invariant).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Iterator, Mapping, Sequence

import numpy as np

from genembed.encode.embed import Embedder, embed_sequences, pad_rows, token_batches
from genembed.encode.tokenize import plan_tokenizer

if TYPE_CHECKING:
    import polars as pl

    from genembed.encode.plan import RunPlan

    from genembed.data.genome import Genome

CHUNK = 1024  # positions per row of the pass along the sequence (plus the reach on each side)


class Scanner:
    """``scanner(block, starts, size)``: float32 vectors (float16 values, as a run stores them) of
    the windows ``block[s:s + size]`` for ``s`` in ``starts``."""

    def __init__(self, embedder: Embedder, tokenizer: Any, limit: int):
        self.embedder, self.tokenizer, self.limit = embedder, tokenizer, limit
        self.reach = local_reach(embedder, tokenizer)

    @classmethod
    def for_plan(cls, plan: "RunPlan", embedder: Embedder | None = None) -> "Scanner":
        """Windows of a sequence embedded as the run's shards are (one pass along the sequence for a
        local model), with the run's model (loaded when no ``embedder`` is given)."""
        embedder = embedder or Embedder.for_plan(plan)
        return cls(embedder, plan_tokenizer(plan, embedder.tokenizer), plan.max_tokens)

    def __call__(self, block: bytes, starts: np.ndarray, size: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        if self.reach is None or size <= 4 * self.reach or size > self.limit or not len(starts):
            return embed_sequences(self.embedder, self.tokenizer, [block[s : s + size] for s in starts], self.limit,
                                   "track windows")
        ids = self.tokenizer.encode_batch([block])[0].astype(np.int64)
        return window_means(self.embedder, self.reach, ids, starts, size).astype(np.float16).astype(np.float32)


def sequence_embedder(plan: "RunPlan", scan: Scanner | None = None) -> Callable[[Sequence[bytes]], np.ndarray]:
    """``sequences -> vectors`` made as the run's shards are, with the model of ``scan`` where given
    (one model in memory for both), else the run's, loaded."""
    scan = scan or Scanner.for_plan(plan)
    return lambda seqs: embed_sequences(scan.embedder, scan.tokenizer, seqs, plan.max_tokens)


def scan_genome(scan: Scanner, fasta: "Genome", size: int, step: int, max_n_fraction: float,
                stored: Mapping[str, np.ndarray] | None = None, chunk: int = 4096,
                owned: Mapping[str, tuple[int, int]] | None = None
                ) -> Iterator[tuple[str, np.ndarray, np.ndarray, np.ndarray]]:
    """A dense scan: windows of ``size`` bp every ``step`` bp along every contig, those with at most
    ``max_n_fraction`` N (as a run's windows are filtered), ``chunk`` at a time; the ``stored``
    windows (per contig, their starts, ascending) come from the same pass, so that a run's windows and
    a track cost one pass together. ``owned`` (a shard's :func:`genembed.data.windows.shard_track_spans`):
    only the track windows starting in these spans. Yields per block: contig, the track's starts, their
    vectors, and the vectors of the stored windows whose starts fall in the block (float32 of float16
    values)."""
    from genembed.data.windows import encode, window_sums

    stored = stored or {}
    for contig, length in fasta.contigs.items():
        mine = np.asarray(stored.get(contig, np.zeros(0, dtype=np.int64)), dtype=np.int64)
        if length < size or (owned is not None and contig not in owned):
            continue
        starts = np.arange(0, length - size + 1, step)
        if owned is not None:
            starts = starts[(starts >= owned[contig][0]) & (starts < owned[contig][1])]
        for lo in range(0, len(starts), chunk):
            part = starts[lo : lo + chunk]
            upto = starts[lo + chunk] if lo + chunk < len(starts) else length
            extra = mine[(mine >= part[0]) & (mine < upto)]  # part[0] is 0 in the first block
            first = int(part[0])
            block = fasta.fetch(contig, first, max(int(part[-1]), int(extra[-1]) if len(extra) else 0) + size)
            ok = window_sums(encode(block) == 4, part - first, size) / size <= max_n_fraction  # as n_fraction
            wanted = np.concatenate([part[ok], extra]) - first
            at, back = np.unique(wanted, return_inverse=True)
            vectors = scan(block, at, size) if len(at) else np.zeros((0, scan.embedder.hidden_size), np.float32)
            k = int(ok.sum())
            yield contig, part[ok], vectors[back[:k]], vectors[back[k:]]


def scan_with_track(scan: Scanner, fasta: "Genome", contigs: np.ndarray, starts: np.ndarray, size: int, step: int,
                    max_n_fraction: float, owned: Mapping[str, tuple[int, int]] | None = None
                    ) -> tuple[np.ndarray, "pl.DataFrame", np.ndarray]:
    """A run's windows (``contigs``, ``starts``; any order) and a dense track's windows (see
    :func:`scan_genome`; ``owned``: a shard's spans) in one pass: the windows' float16 vectors in their
    order, the track's windows (contig, start, end) and their float16 vectors."""
    import polars as pl

    contigs, starts = np.asarray(contigs).astype(str), np.asarray(starts, dtype=np.int64)
    order = np.lexsort((starts, contigs))
    names, first_row = np.unique(contigs[order], return_index=True)  # sorted: each contig's rows are one run
    rows = dict(zip(names, np.split(order, first_row[1:])))
    out = np.zeros((len(starts), scan.embedder.hidden_size), dtype=np.float16)
    names, at, parts = [], [], []
    done = {c: 0 for c in rows}
    for contig, track, vectors, mine in scan_genome(scan, fasta, size, step, max_n_fraction,
                                                     {c: starts[r] for c, r in rows.items()}, owned=owned):
        if len(mine):
            out[rows[contig][done[contig] : done[contig] + len(mine)]] = mine
            done[contig] += len(mine)
        names.append(np.full(len(track), contig, dtype=object))
        at.append(track)
        parts.append(vectors.astype(np.float16))
    if any(done[c] != len(r) for c, r in rows.items()):
        raise ValueError(f"{fasta.path}: windows outside its contigs")
    first = np.concatenate(at) if at else np.zeros(0, dtype=np.int64)
    table = pl.DataFrame({"contig": np.concatenate(names) if names else np.zeros(0, dtype=object), "start": first,
                          "end": first + size}, schema={"contig": pl.String, "start": pl.Int64, "end": pl.Int64})
    return out, table, (np.concatenate(parts) if parts else np.zeros((0, out.shape[1]), dtype=np.float16))


def model_reach(embedder: Embedder) -> int | None:
    """The model's ``receptive_field`` where its mean-pooled vectors may share one pass along the
    sequence (mean pooling; one strand, or a reverse-complement invariant model); else None."""
    model = embedder.model  # a local model (or its traced copy, by the export's record) tells its reach
    reach = getattr(model, "receptive_field", None)
    config = getattr(embedder.model, "config", None)
    one_strand = embedder.settings.strands == "forward" or bool(getattr(config, "rc_invariant", False))
    return reach if isinstance(reach, int) and one_strand and embedder.settings.pooling == "mean" else None


def local_reach(embedder: Embedder, tokenizer: Any) -> int | None:
    """:func:`model_reach` where the tokenizer gives one token per base (see the module docstring)."""
    from genembed.encode.tokenize import KmerTokenizer

    one_per_base = isinstance(tokenizer, KmerTokenizer) and tokenizer.k == 1 and not tokenizer.prefix \
        and not tokenizer.suffix
    return model_reach(embedder) if one_per_base else None


def shard_vectors(embedder: Embedder, rows: Sequence[np.ndarray], contigs: np.ndarray, starts: np.ndarray
                  ) -> np.ndarray | None:
    """Float16 vectors of a shard's windows (token ``rows`` in table order, their ``contigs`` and
    ``starts``) from one pass along each run of overlapping windows, whose tokens are stitched back
    into the sequence's; None where that does not apply (a model without local states, tokens that
    are not one per base) or would not save work (windows that barely overlap)."""
    reach, n = model_reach(embedder), len(starts)
    if reach is None or not n:
        return None
    rows = rows[:n]  # with strands: average the reverse-complement rows follow; the model is RC-invariant
    size = len(rows[0])
    if size <= 4 * reach or any(len(r) != size for r in rows):
        return None
    runs = _runs(rows, contigs, np.asarray(starts, dtype=np.int64), size)
    if runs is None or sum(len(ids) for ids, _, _ in runs) + 4 * reach * n >= n * size:
        return None
    out = np.empty((n, embedder.hidden_size), dtype=np.float16)
    for ids, which, rel in runs:
        out[which] = window_means(embedder, reach, ids, rel, size)
    return out


def _runs(rows: Sequence[np.ndarray], contigs: np.ndarray, starts: np.ndarray, size: int
          ) -> list[tuple[np.ndarray, np.ndarray, np.ndarray]] | None:
    """Runs of consecutive windows of one contig that overlap or touch: each run's token stream,
    its windows (indices) and their starts in the stream; None when overlapping windows' tokens
    disagree (they are not one token per base)."""
    runs, i = [], 0
    while i < len(rows):
        parts, j = [np.asarray(rows[i], dtype=np.int64)], i
        while j + 1 < len(rows) and contigs[j + 1] == contigs[i] and starts[j] < starts[j + 1] <= starts[j] + size:
            shift = int(starts[j + 1] - starts[j])
            if not np.array_equal(rows[j][shift:], rows[j + 1][: size - shift]):
                return None
            parts.append(np.asarray(rows[j + 1][size - shift :], dtype=np.int64))
            j += 1
        runs.append((np.concatenate(parts), np.arange(i, j + 1), starts[i : j + 1] - starts[i]))
        i = j + 1
    return runs


def window_means(embedder: Embedder, reach: int, ids: np.ndarray, starts: np.ndarray, size: int) -> np.ndarray:
    """Mean states (float64) of the windows ``ids[s:s + size]``: the pass along ``ids`` gives each
    window's positions more than ``reach`` from its ends, the windows' edges are run on their own."""
    keep = ~np.isin(ids, embedder.special.cpu().numpy())
    ends = starts + size
    n = len(starts)
    inner = _prefix_sums(embedder, reach, ids, keep, np.concatenate([starts + reach, ends - reach]))
    edges = _edge_sums(embedder, reach, ids, keep, np.concatenate([starts, ends - 2 * reach]), n)
    counts = np.concatenate([[0], np.cumsum(keep)])
    count = np.maximum(counts[ends] - counts[starts], 1)
    return (inner[n:] - inner[:n] + edges[:n] + edges[n:]) / count[:, None]


def _states(embedder: Embedder, ids: np.ndarray, mask: np.ndarray | None, keep: np.ndarray):
    """Per-position states of a batch of token rows (float32 torch tensor ``[rows, positions, d]`` on
    the model's device), zero where ``keep`` is False (padding, special tokens)."""
    import torch

    t = torch.from_numpy(ids).to(embedder.device)
    m = None if mask is None else torch.from_numpy(mask.astype(np.int64)).to(embedder.device)
    return embedder.encode(t, m).float() * torch.from_numpy(keep).to(embedder.device)[..., None]


def _prefix_sums(embedder: Embedder, r: int, ids: np.ndarray, keep: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``sum(state[i] for i < p if keep[i])`` for each ``p`` in ``at``, from one pass along ``ids`` in
    rows of ``CHUNK`` positions with ``r`` positions of context on each side."""
    import torch

    length, d = len(ids), embedder.hidden_size
    order = np.argsort(at, kind="stable")
    out = np.zeros((len(at), d), dtype=np.float64)
    running = np.zeros(d, dtype=np.float64)
    j = 0
    chunks = list(range(0, length, CHUNK))
    with torch.inference_mode():
        for group in _groups(len(chunks), embedder.budget // (CHUNK + 2 * r)):
            spans = [(c, min(c + CHUNK, length), max(0, c - r), min(length, c + CHUNK + r))
                     for c in (chunks[g] for g in group)]
            ids_b, mask = _padded([ids[lo:hi] for _, _, lo, hi in spans], embedder.pad_id)
            inside = np.zeros(ids_b.shape, dtype=bool)  # each row's own chunk, not its context
            for i, (c, e, lo, _) in enumerate(spans):
                inside[i, c - lo : e - lo] = keep[c:e]
            sums = _states(embedder, ids_b, mask, inside).cumsum(1)
            # per row, its points in (c, e] and its total: one gather, one copy back per batch
            bounds = j + np.searchsorted(at[order[j:]], [e for _, e, _, _ in spans], side="right")
            row = np.concatenate([np.full(k - start, i) for i, (start, k) in enumerate(zip([j, *bounds[:-1]], bounds))])
            lo_of = np.array([lo for _, _, lo, _ in spans])
            points = at[order[j : bounds[-1]]]
            take_row = np.concatenate([row, np.arange(len(spans))])
            take_col = np.concatenate([np.maximum(points - lo_of[row] - 1, 0), [e - lo - 1 for _, e, lo, _ in spans]])
            got = sums[torch.from_numpy(take_row), torch.from_numpy(take_col)].double().cpu().numpy()
            picked, totals = got[: len(points)], got[len(points) :]
            before = running + np.concatenate([np.zeros((1, d)), np.cumsum(totals, axis=0)])  # sum before each row
            starts_of = np.array([c for c, _, _, _ in spans])
            out[order[j : bounds[-1]]] = before[row] + np.where((points > starts_of[row])[:, None], picked, 0.0)
            running, j = before[-1], int(bounds[-1])
    return out


def _edge_sums(embedder: Embedder, r: int, ids: np.ndarray, keep: np.ndarray, starts: np.ndarray, n_left: int
               ) -> np.ndarray:
    """Each window edge's states as the window sees them: for the first ``n_left`` starts, the sum over
    the first ``r`` positions of ``ids[s:s + 2r]``; for the rest, over the last ``r`` (the right edges),
    from the model's ``edge_states`` (which computes only what those positions depend on), or where
    it has none (a traced copy), from the model run on the ``2r`` positions."""
    import torch

    out = np.zeros((len(starts), embedder.hidden_size), dtype=np.float64)
    span = np.arange(2 * r)
    is_left = np.arange(len(starts)) < n_left
    with torch.inference_mode():
        for left in (True, False):
            which = np.flatnonzero(is_left == left)
            for batch in token_batches(np.full(len(which), 2 * r), embedder.budget, True):
                at = starts[which[batch]][:, None] + span
                mine = keep[at][:, :r] if left else keep[at][:, r:]  # the edge's r positions
                rows = torch.from_numpy(ids[at]).to(embedder.device)
                if hasattr(embedder.model, "edge_states"):
                    states = embedder.model.edge_states(rows, r, left, embedder.settings.layer)
                else:
                    states = embedder.encode(rows)[:, :r] if left else embedder.encode(rows)[:, r:]
                sums = (states.float() * torch.from_numpy(mine).to(embedder.device)[..., None]).sum(1)
                out[which[batch]] = sums.double().cpu().numpy()
    return out


def _groups(n: int, size: int) -> Iterator[range]:
    size = max(1, size)
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


def _padded(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows padded on the right, and their mask (None when all have one length)."""
    ids = pad_rows(rows, pad_id)
    if all(len(r) == ids.shape[1] for r in rows):
        return ids, None
    return ids, np.arange(ids.shape[1])[None, :] < np.array([len(r) for r in rows])[:, None]
