"""A supervised, stranded promoter model (issue 29): a small convolutional network on the bases around
each track bin, read on each strand, trained per run on the run's own labels.

A pooled window vector cannot say where in a window the -10 and -35 boxes sit, nor on which strand;
this model sees the sequence itself. An example is one bin (every ``step`` bp) on one strand: the
``context`` bp read on that strand that end ``after`` bp downstream of the bin. It is a promoter when a
transcription start (a gene start, or each operon's first gene) on that strand lies 0-``reach`` bp
downstream of the bin.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ..tokenize import reverse_complement
from ..windows import encode


@dataclass(frozen=True)
class CnnSettings:
    step: int = 10  # bp between bins
    context: int = 200  # bp of sequence per example, read on the example's strand
    after: int = 50  # of which this many downstream of the bin
    reach: int = 100  # a start this far downstream of a bin (on its strand) makes it a promoter
    width: int = 64  # convolution channels
    epochs: int = 3
    negatives: int = 4  # negatives per positive drawn in each epoch
    batch_size: int = 256
    learning_rate: float = 2e-3
    seed: int = 0


def contexts(seq: bytes, bins: np.ndarray, strand: str, s: CnnSettings) -> list[bytes]:
    """Each bin's example sequence on ``strand`` (upper-cased; padded with N at the contig's ends)."""
    pad = b"N" * s.context
    padded = pad + seq.upper() + pad
    if strand == "+":
        return [padded[b + s.after - s.context + s.context : b + s.after + s.context] for b in bins]
    return [reverse_complement(padded[b - s.after + s.context : b - s.after + 2 * s.context]) for b in bins]


def stranded_labels(starts: np.ndarray, bins: np.ndarray, strand: str, reach: int) -> np.ndarray:
    """True where a start (sorted or not; first transcribed bases on ``strand``) lies 0-``reach`` bp
    downstream of a bin on that strand."""
    tss = np.sort(starts)
    if len(tss) == 0:
        return np.zeros(len(bins), dtype=bool)
    lo, hi = (bins, bins + reach) if strand == "+" else (bins - reach, bins)
    i = np.searchsorted(tss, lo)
    return (i < len(tss)) & (tss[np.minimum(i, len(tss) - 1)] <= hi)


def one_hot(seqs: Sequence[bytes]):
    """[n, 4, length] float tensor; N and other letters are all-zero columns."""
    import torch

    codes = np.stack([encode(s) for s in seqs]).astype(np.int64)
    out = np.zeros((len(seqs), 5, codes.shape[1]), dtype=np.float32)
    np.put_along_axis(out, codes[:, None, :], 1.0, axis=1)
    return torch.from_numpy(out[:, :4])


def _network(width: int, context: int):
    import torch.nn as nn

    class PromoterCNN(nn.Module):
        """Three convolutions (15, 7, 7 bp; max-pool 4 after the first, 2 after the second), then a
        linear layer over every position (where a box sits matters, as in CNNProm): one logit."""

        def __init__(self):
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv1d(4, width, 15, padding=7), nn.ReLU(), nn.MaxPool1d(4),
                nn.Conv1d(width, width, 7, padding=3), nn.ReLU(), nn.MaxPool1d(2),
                nn.Conv1d(width, width, 7, padding=3), nn.ReLU(), nn.Flatten(), nn.Dropout(0.3))
            self.head = nn.Linear(width * (context // 8), 1)

        def forward(self, x):
            return self.head(self.body(x))[:, 0]

    return PromoterCNN()


class PromoterModel:
    """The trained network; :meth:`score` gives a logit per example sequence."""

    def __init__(self, net, settings: CnnSettings, seconds: float):
        self.net, self.settings, self.seconds = net, settings, seconds

    @classmethod
    def fit(cls, seqs: Sequence[bytes], labels: np.ndarray, settings: CnnSettings = CnnSettings()) -> "PromoterModel":
        """Train on examples (all positives and ``negatives`` times as many negatives, drawn afresh each
        epoch), binary cross-entropy, AdamW."""
        import torch

        torch.manual_seed(settings.seed)
        rng = np.random.default_rng(settings.seed)
        labels = np.asarray(labels, dtype=bool)
        pos, neg = np.flatnonzero(labels), np.flatnonzero(~labels)
        if len(pos) == 0 or len(neg) == 0:
            raise ValueError("the supervised promoter model needs positive and negative examples")
        net = _network(settings.width, settings.context)
        opt = torch.optim.AdamW(net.parameters(), settings.learning_rate, weight_decay=1e-2)
        started = time.monotonic()
        net.train()
        for _ in range(settings.epochs):
            drawn = rng.choice(neg, min(len(neg), settings.negatives * len(pos)), replace=False)
            order = rng.permutation(np.concatenate([pos, drawn]))
            for i in range(0, len(order), settings.batch_size):
                batch = order[i : i + settings.batch_size]
                x = one_hot([seqs[j] for j in batch])
                y = torch.from_numpy(labels[batch].astype(np.float32))
                loss = torch.nn.functional.binary_cross_entropy_with_logits(net(x), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
        net.eval()
        return cls(net, settings, time.monotonic() - started)

    def score(self, seqs: Sequence[bytes], chunk: int = 4096) -> np.ndarray:
        import torch

        out = []
        with torch.no_grad():
            for i in range(0, len(seqs), chunk):
                out.append(self.net(one_hot(seqs[i : i + chunk])).numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    def track(self, seq: bytes) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Bins of a contig and their ``+`` and ``-`` strand logits."""
        s = self.settings
        bins = np.arange(0, len(seq), s.step)
        return bins, self.score(contexts(seq, bins, "+", s)), self.score(contexts(seq, bins, "-", s))
