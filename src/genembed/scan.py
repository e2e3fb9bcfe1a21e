"""Dense scans: the pooled embedding of windows of one size at many starts along a sequence (the
promoter track's windows every ``track_step`` bp), equal to embedding each window on its own.

For most models every window is embedded on its own. A model whose hidden state at a position
depends only on the bases within ``receptive_field`` of it (genembed-conv: convolutions, no
attention) is run once along the sequence instead, and again only on each window's edges, where a
window's own boundary changes the states: a window's mean is then the sum of the sequence's states
strictly inside it plus its two edges' sums, so windows 100 bp apart cost about 1.8 passes over the
sequence instead of five. This needs one token per base (a k-mer tokenizer with ``k = 1``, no start or
end token), mean pooling, and one strand (or a model that is reverse-complement invariant).
"""

from __future__ import annotations

from typing import Any, Iterator

import numpy as np

from .embed import Embedder, embed_sequences, token_batches

CHUNK = 1024  # positions per row of the pass along the sequence (plus the reach on each side)


class Scanner:
    """``scanner(block, starts, size)``: float32 vectors (float16 values, as a run stores them) of
    the windows ``block[s:s + size]`` for ``s`` in ``starts``."""

    def __init__(self, embedder: Embedder, tokenizer: Any, limit: int):
        self.embedder, self.tokenizer, self.limit = embedder, tokenizer, limit
        self.reach = local_reach(embedder, tokenizer)

    def __call__(self, block: bytes, starts: np.ndarray, size: int) -> np.ndarray:
        starts = np.asarray(starts, dtype=np.int64)
        if self.reach is None or size <= 4 * self.reach or size > self.limit or not len(starts):
            return embed_sequences(self.embedder, self.tokenizer, [block[s : s + size] for s in starts], self.limit,
                                   "track windows")
        return self._local(block, starts, size)

    def _local(self, block: bytes, starts: np.ndarray, size: int) -> np.ndarray:
        """Window means from one pass along ``block`` plus a pass over each window's edges."""
        r = self.reach
        ids = self.tokenizer.encode_batch([block])[0].astype(np.int64)
        keep = ~np.isin(ids, self.embedder.special.cpu().numpy())
        ends = starts + size
        inner = _prefix_sums(self, ids, keep, np.concatenate([starts + r, ends - r]))
        n = len(starts)
        edges = _edge_sums(self, ids, keep, np.concatenate([starts, ends - 2 * r]), r, n)
        total = inner[n:] - inner[:n] + edges[:n] + edges[n:]
        counts = np.concatenate([[0], np.cumsum(keep)])
        count = np.maximum(counts[ends] - counts[starts], 1)
        return (total / count[:, None]).astype(np.float16).astype(np.float32)

    def states(self, ids: np.ndarray, mask: np.ndarray | None, keep: np.ndarray):
        """Per-position states of a batch of token rows (float32 torch tensor ``[rows, positions, d]``
        on the model's device), zero where ``keep`` is False (padding, special tokens)."""
        import torch

        e = self.embedder
        t = torch.from_numpy(ids).to(e.device)
        m = None if mask is None else torch.from_numpy(mask.astype(np.int64)).to(e.device)
        return e.encode(t, m).float() * torch.from_numpy(keep).to(e.device)[..., None]


def local_reach(embedder: Embedder, tokenizer: Any) -> int | None:
    """Bases each side of a position that its state depends on, where a scan may share one pass along
    the sequence between windows (see the module docstring); None where windows are embedded one by one."""
    from .tokenize import KmerTokenizer

    reach = getattr(embedder.model, "receptive_field", None)
    config = getattr(embedder.model, "config", None)
    one_strand = embedder.settings.strands == "forward" or bool(getattr(config, "rc_invariant", False))
    one_per_base = isinstance(tokenizer, KmerTokenizer) and tokenizer.k == 1 and not tokenizer.prefix \
        and not tokenizer.suffix
    if isinstance(reach, int) and one_per_base and one_strand and embedder.settings.pooling == "mean":
        return reach
    return None


def _prefix_sums(scanner: Scanner, ids: np.ndarray, keep: np.ndarray, at: np.ndarray) -> np.ndarray:
    """``sum(state[i] for i < p if keep[i])`` for each ``p`` in ``at``, from one pass along ``ids`` in
    rows of ``CHUNK`` positions with ``reach`` positions of context on each side."""
    import torch

    r, length, d = scanner.reach, len(ids), scanner.embedder.hidden_size
    order = np.argsort(at, kind="stable")
    out = np.zeros((len(at), d), dtype=np.float64)
    running = np.zeros(d, dtype=np.float64)
    j = 0
    chunks = list(range(0, length, CHUNK))
    with torch.inference_mode():
        for group in _groups(len(chunks), scanner.embedder.budget // (CHUNK + 2 * r)):
            spans = [(c, min(c + CHUNK, length), max(0, c - r), min(length, c + CHUNK + r))
                     for c in (chunks[g] for g in group)]
            ids_b, mask = _padded([ids[lo:hi] for _, _, lo, hi in spans], scanner.embedder.pad_id)
            inside = np.zeros(ids_b.shape, dtype=bool)  # each row's own chunk, not its context
            for i, (c, e, lo, _) in enumerate(spans):
                inside[i, c - lo : e - lo] = keep[c:e]
            sums = scanner.states(ids_b, mask, inside).cumsum(1)
            for i, (c, e, lo, _) in enumerate(spans):
                k = j + int(np.searchsorted(at[order[j:]], e, side="right"))
                here = at[order[j:k]]
                picked = sums[i, here - lo - 1].double().cpu().numpy() if k > j else np.zeros((0, d))
                out[order[j:k]] = running + np.where((here > c)[:, None], picked, 0.0)
                running = running + sums[i, e - lo - 1].double().cpu().numpy()
                j = k
    return out


def _edge_sums(scanner: Scanner, ids: np.ndarray, keep: np.ndarray, starts: np.ndarray, r: int, n_left: int
               ) -> np.ndarray:
    """Each window edge's states as the window sees them: for the first ``n_left`` starts, the sum over
    the first ``r`` positions of ``ids[s:s + 2r]``; for the rest, over the last ``r`` (the right edges)."""
    import torch

    out = np.zeros((len(starts), scanner.embedder.hidden_size), dtype=np.float64)
    span = np.arange(2 * r)
    with torch.inference_mode():
        for batch in token_batches(np.full(len(starts), 2 * r), scanner.embedder.budget, True):
            at = starts[batch][:, None] + span
            left = batch < n_left
            own = keep[at] & np.where(left[:, None], span < r, span >= r)  # the edge's r positions
            out[batch] = scanner.states(ids[at], None, own).sum(1).double().cpu().numpy()
    return out


def _groups(n: int, size: int) -> Iterator[range]:
    size = max(1, size)
    for i in range(0, n, size):
        yield range(i, min(n, i + size))


def _padded(rows: list[np.ndarray], pad_id: int) -> tuple[np.ndarray, np.ndarray | None]:
    """Rows padded on the right, and their mask (None when all have one length)."""
    from .embed import pad_rows

    ids = pad_rows(rows, pad_id)
    if all(len(r) == ids.shape[1] for r in rows):
        return ids, None
    return ids, np.arange(ids.shape[1])[None, :] < np.array([len(r) for r in rows])[:, None]
