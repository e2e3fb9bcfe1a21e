"""A supervised, stranded promoter model (issue 29): a small convolutional network on the bases around
each bin, read on each strand, trained per run on the run's own labels.

A pooled window vector cannot say where in a window the -10 and -35 boxes sit, nor on which strand;
this model sees the sequence itself. Everything happens in *strand coordinates*: a contig read on the
``+`` strand, or its reverse complement for ``-`` (position ``x`` there is base ``n - 1 - x`` of the
contig). A bin sits every :data:`STEP` bp; its example is the ``context`` bp that end ``after`` bp
downstream of it. It is a promoter when a transcription start on that strand lies 0-``reach`` bp
downstream of it.

The network uses unpadded convolutions and pools by 8 = :data:`STEP` in all, so one pass along a whole
contig gives every bin exactly the score its own example gets (:meth:`PromoterModel.strand_track`):
about 20x less work than scoring overlapping examples one by one.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from genembed.data.windows import encode

STEP = 8  # bp between bins: the network's total pooling stride


@dataclass(frozen=True)
class CnnSettings:
    context: int = 200  # bp of sequence per example, read on the example's strand
    after: int = 50  # of which this many at and downstream of the bin
    reach: int = 100  # a start this far downstream of a bin (on its strand) makes it a promoter
    width: int = 32  # convolution channels
    epochs: int = 3
    negatives: int = 4  # negatives per positive drawn in each epoch
    coding_share: float | None = 0.5  # of those, the share drawn from coding bins (the rest: the others); None: all alike
    max_positives: int = 20_000  # positives drawn per epoch at most (all when fewer)
    batch_size: int = 256
    learning_rate: float = 2e-3
    seed: int = 0

    @property
    def before(self) -> int:
        return self.context - self.after


def draw_negatives(negatives: np.ndarray, coding: np.ndarray | None, n: int, share: float | None,
                   rng: np.random.Generator) -> np.ndarray:
    """``n`` of the example indices ``negatives`` (without replacement): ``share`` of them from those
    where ``coding`` (per example) is true, the rest from the others; a group that runs short is
    topped up from the other. All alike when ``coding`` or ``share`` is None."""
    n = min(n, len(negatives))
    if coding is None or share is None:
        return rng.choice(negatives, n, replace=False)
    inside = np.asarray(coding, dtype=bool)[negatives]
    groups = negatives[inside], negatives[~inside]
    want = int(round(share * n))
    take = [min(want, len(groups[0])), min(n - want, len(groups[1]))]
    short = n - sum(take)
    take[0] += min(short, len(groups[0]) - take[0])
    take[1] += n - sum(take)
    return np.concatenate([rng.choice(g, t, replace=False) for g, t in zip(groups, take)])


def strand_codes(seq: bytes, strand: str) -> np.ndarray:
    """Base codes (0-3 for A, C, G, T; 4 for anything else) of a contig read on ``strand``."""
    codes = encode(seq)
    return codes if strand == "+" else np.where(codes == 4, 4, 3 - codes)[::-1].astype(np.uint8)


def n_bins(length: int) -> int:
    return -(-length // STEP)


def padded(codes: np.ndarray, s: CnnSettings) -> np.ndarray:
    """``codes`` with N before and after, so that bin ``j``'s example is ``[STEP * j, STEP * j + context)``."""
    right = STEP * (n_bins(len(codes)) - 1) + s.context - s.before - len(codes)
    return np.concatenate([np.full(s.before, 4, np.uint8), codes, np.full(max(right, 0), 4, np.uint8)])


def bin_labels(starts: np.ndarray, length: int, reach: int) -> np.ndarray:
    """True for each bin (strand coordinates) with a start (strand coordinates) 0-``reach`` bp downstream."""
    bins = np.arange(n_bins(length)) * STEP
    tss = np.sort(np.asarray(starts, dtype=np.int64))
    if len(tss) == 0:
        return np.zeros(len(bins), dtype=bool)
    i = np.searchsorted(tss, bins)
    return (i < len(tss)) & (tss[np.minimum(i, len(tss) - 1)] <= bins + reach)


def to_strand(positions: np.ndarray, length: int, strand: str) -> np.ndarray:
    """Contig positions in strand coordinates (and back: the map is its own inverse)."""
    positions = np.asarray(positions, dtype=np.int64)
    return positions if strand == "+" else length - 1 - positions


def one_hot(codes: np.ndarray):
    """[rows, length] codes -> [rows, 4, length] float tensor; N is an all-zero column."""
    import torch

    out = np.zeros(codes.shape + (5,), dtype=np.float32)
    np.put_along_axis(out, codes[..., None].astype(np.int64), 1.0, axis=-1)
    return torch.from_numpy(np.ascontiguousarray(out[..., :4].transpose(0, 2, 1)))


def _network(width: int, context: int):
    import torch.nn as nn

    # lengths: context -14 (conv 15), /4, -6 (conv 7), /2, -6 (conv 7): the head spans what is left
    span = ((context - 14) // 4 - 6) // 2 - 6
    if span < 1:
        raise ValueError(f"the promoter network cannot read a context of {context} bp (at least 78)")
    return nn.Sequential(
        nn.Conv1d(4, width, 15), nn.ReLU(), nn.MaxPool1d(4),
        nn.Conv1d(width, width, 7), nn.ReLU(), nn.MaxPool1d(2),
        nn.Conv1d(width, width, 7), nn.ReLU(), nn.Dropout(0.3),
        nn.Conv1d(width, 1, span))  # a weight for every position: where a box sits matters, as in CNNProm


class PromoterModel:
    """The trained network (three unpadded convolutions, max-pooling by 4 and 2, and a head over every
    remaining position); :meth:`score` gives a logit per example, :meth:`strand_track` per bin."""

    def __init__(self, net, settings: CnnSettings, seconds: float):
        self.net, self.settings, self.seconds = net, settings, seconds

    @classmethod
    def fit(cls, sequence: np.ndarray, offsets: np.ndarray, labels: np.ndarray,
            settings: CnnSettings = CnnSettings(), device: str = "cpu", bf16: bool = False,
            coding: np.ndarray | None = None) -> "PromoterModel":
        """Train on examples ``sequence[offsets[i] : offsets[i] + context]`` (codes; see :func:`padded`):
        each epoch all positives (at most ``max_positives``) and ``negatives`` times as many negatives,
        drawn afresh (``coding_share`` of them where ``coding``, per example, is true: :func:`draw_negatives`);
        binary cross-entropy, AdamW; ``bf16``: autocast (CPUs with AVX-512 BF16, GPUs)."""
        import torch

        torch.manual_seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        labels = np.asarray(labels, dtype=bool)
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError("the supervised promoter model needs positive and negative examples")
        net = _network(settings.width, settings.context).to(device)
        opt = torch.optim.AdamW(net.parameters(), settings.learning_rate, weight_decay=1e-2)
        window = np.arange(settings.context)
        kind = "cuda" if str(device).startswith("cuda") else "cpu"
        started = time.monotonic()
        net.train()
        for _ in range(settings.epochs):
            p = rng.choice(pos, min(len(pos), settings.max_positives), replace=False)
            drawn = draw_negatives(neg, coding, settings.negatives * len(p), settings.coding_share, rng)
            order = rng.permutation(np.concatenate([p, drawn]))
            for i in range(0, len(order), settings.batch_size):
                batch = order[i : i + settings.batch_size]
                x = one_hot(sequence[offsets[batch][:, None] + window]).to(device)
                y = torch.from_numpy(labels[batch].astype(np.float32)).to(device)
                with torch.autocast(kind, dtype=torch.bfloat16, enabled=bf16):
                    logits = net(x)[:, 0, 0]
                loss = torch.nn.functional.binary_cross_entropy_with_logits(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        return cls(net.cpu() if device != "cpu" else net, settings, time.monotonic() - started)

    def score(self, examples: np.ndarray, chunk: int = 4096) -> np.ndarray:
        """Logits of examples given as [rows, context] codes."""
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(examples), chunk):
                out.append(self.net(one_hot(examples[i : i + chunk]))[:, 0, 0].numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def strand_track(self, codes: np.ndarray, chunk_bins: int = 65_536) -> np.ndarray:
        """The logit of every bin of a contig read on one strand (``codes`` from :func:`strand_codes`),
        in one pass along it (in chunks of ``chunk_bins`` bins)."""
        return self.piece_track(padded(codes, self.settings), n_bins(len(codes)), chunk_bins)

    def piece_track(self, piece: np.ndarray, bins: int, chunk_bins: int = 65_536) -> np.ndarray:
        """Logits of ``bins`` consecutive bins whose examples tile ``piece`` (strand codes from the first
        bin's example start, ``STEP * (bins - 1) + context`` long: :func:`span_piece`)."""
        import torch

        s = self.settings
        out = []
        with torch.no_grad():
            for j in range(0, bins, chunk_bins):
                m = min(chunk_bins, bins - j)
                part = piece[STEP * j : STEP * (j + m - 1) + s.context]
                out.append(self.net(one_hot(part[None]))[0, 0].numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def save(self, path: str | Path) -> None:
        """The weights and settings, atomically (``torch.save``)."""
        import torch

        from genembed.data.io import atomic_path

        with atomic_path(path) as tmp:
            torch.save({"state": self.net.state_dict(), "settings": asdict(self.settings), "seconds": self.seconds}, tmp)

    @classmethod
    def load(cls, path: str | Path) -> "PromoterModel":
        """A model :meth:`save` wrote (weights only: nothing in the file is executed)."""
        import torch

        saved = torch.load(path, map_location="cpu", weights_only=True)
        settings = CnnSettings(**saved["settings"])
        net = _network(settings.width, settings.context)
        net.load_state_dict(saved["state"])
        net.eval()
        return cls(net, settings, float(saved["seconds"]))


def owned_bins(length: int, strand: str, span: tuple[int, int]) -> tuple[int, int]:
    """The bins ``[j0, j1)`` of a contig read on ``strand`` whose base lies in the contig interval
    ``span``: over spans that tile a contig, every bin of each strand is owned exactly once."""
    s0, s1 = span
    if strand == "+":
        j0, j1 = -(-s0 // STEP), -(-s1 // STEP)
    else:  # bin j sits at contig position length - 1 - STEP * j
        j0, j1 = -(-(length - s1) // STEP), (length - 1 - s0) // STEP + 1
    return max(j0, 0), min(max(j1, j0, 0), n_bins(length))


def span_piece(fetch: Callable[[int, int], bytes], length: int, strand: str, j0: int, j1: int,
               s: CnnSettings) -> np.ndarray:
    """The strand codes that bins ``[j0, j1)`` of a contig read on ``strand`` are scored from: from
    ``STEP * j0 - before`` for ``STEP * (j1 - 1) + context`` bp, N beyond the contig; ``fetch(lo, hi)``
    gives the contig's bases ``[lo, hi)``. Only this stretch is read."""
    a = STEP * j0 - s.before
    b = STEP * (j1 - 1) - s.before + s.context
    lo, hi = max(a, 0), min(b, length)
    if hi <= lo:
        core = np.zeros(0, dtype=np.uint8)
    elif strand == "+":
        core = encode(fetch(lo, hi))
    else:
        core = strand_codes(fetch(length - hi, length - lo), "-")
    return np.concatenate([np.full(lo - a, 4, np.uint8), core, np.full(b - max(hi, lo), 4, np.uint8)])
