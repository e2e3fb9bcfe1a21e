"""The supervised, stranded promoter model (issue 29): on a genome with a planted promoter motif it
learns where the motif sits and on which strand, which a strand-blind composition probe of the same
sequence cannot tell."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from genembed.reports.supervised import CnnSettings, PromoterModel, contexts, stranded_labels
from genembed.tokenize import reverse_complement
from genembed.windows import canonical_kmer_frequencies

MOTIF = b"TTGACAATATAAT"  # a -35 box, a short spacer and a -10 box, 30 bp upstream of each start
SETTINGS = CnnSettings(after=100, reach=60, epochs=15, width=32)


def planted(n: int = 60_000, seed: int = 0) -> tuple[bytes, np.ndarray, np.ndarray]:
    """A random genome with starts every ~300 bp, alternately on + and -, the motif upstream of each on
    its strand; returns the genome and the + and - starts."""
    rng = np.random.default_rng(seed)
    seq = bytearray(rng.choice(list(b"ACGT"), n).astype(np.uint8).tobytes())
    plus, minus = [], []
    for i, s in enumerate(range(300, n - 300, 300)):
        s += int(rng.integers(-40, 40))
        if i % 2 == 0:
            seq[s - 30 : s - 30 + len(MOTIF)] = MOTIF
            plus.append(s)
        else:
            seq[s + 31 - len(MOTIF) : s + 31] = reverse_complement(MOTIF)
            minus.append(s)
    return bytes(seq), np.array(plus), np.array(minus)


@pytest.fixture(scope="module")
def trained():
    seq, plus, minus = planted()
    bins = np.arange(0, len(seq), SETTINGS.step)
    data = {strand: (contexts(seq, bins, strand, SETTINGS), stranded_labels(starts, bins, strand, SETTINGS.reach))
            for strand, starts in (("+", plus), ("-", minus))}
    train = bins < 0.7 * len(seq) - SETTINGS.context
    test = bins >= 0.7 * len(seq)
    seqs = [s for strand in "+-" for s, t in zip(data[strand][0], train) if t]
    labels = np.concatenate([data[strand][1][train] for strand in "+-"])
    model = PromoterModel.fit(seqs, labels, SETTINGS)
    return model, data, train, test, seq, plus, minus


def test_the_supervised_model_places_a_planted_motif_by_strand_where_a_strand_blind_probe_cannot(trained):
    model, data, train, test, *_ = trained
    x_test = [s for strand in "+-" for s, t in zip(data[strand][0], test) if t]
    y_test = np.concatenate([data[strand][1][test] for strand in "+-"])
    cnn = roc_auc_score(y_test, model.score(x_test))
    x_train = [s for strand in "+-" for s, t in zip(data[strand][0], train) if t]
    y_train = np.concatenate([data[strand][1][train] for strand in "+-"])
    probe = LogisticRegression(max_iter=2000).fit(canonical_kmer_frequencies(x_train, 4), y_train)
    blind = roc_auc_score(y_test, probe.decision_function(canonical_kmer_frequencies(x_test, 4)))
    assert cnn >= 0.95 and blind <= 0.8, (cnn, blind)


def test_stranded_tracks_put_a_minus_strand_promoter_on_minus(trained):
    model, *_, seq, plus, minus = trained
    bins, up, down = model.track(seq)
    held = len(seq) * 0.7
    for starts, mine, other in ((plus, up, down), (minus, down, up)):
        starts = starts[starts > held]
        near = [np.flatnonzero(np.abs(bins - s) <= SETTINGS.reach) for s in starts]
        wins = [mine[i].max() > other[i].max() for i in near]
        assert np.mean(wins) >= 0.9


def test_stranded_labels_mark_bins_a_start_lies_downstream_of():
    bins = np.arange(0, 300, 10)
    plus = stranded_labels(np.array([150]), bins, "+", 60)
    assert bins[plus].tolist() == [90, 100, 110, 120, 130, 140, 150]
    minus = stranded_labels(np.array([150]), bins, "-", 60)
    assert bins[minus].tolist() == [150, 160, 170, 180, 190, 200, 210]
    assert not stranded_labels(np.array([], dtype=np.int64), bins, "+", 60).any()  # a contig without genes
