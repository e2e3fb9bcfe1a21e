"""The supervised, stranded promoter model (issue 29): on a genome with a planted promoter motif it
learns where the motif sits and on which strand, which a strand-blind composition probe of the same
sequence cannot tell; one pass along a contig scores every bin exactly as its own example."""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score

from genembed.reports.supervised import (STEP, CnnSettings, PromoterModel, bin_labels, n_bins, padded, strand_codes,
                                         to_strand)
from genembed.encode.tokenize import reverse_complement
from genembed.data.windows import canonical_kmer_frequencies

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
    """The model trained on the first 70% of the genome (both strands); examples of the last 30%."""
    seq, plus, minus = planted()
    n, parts = len(seq), []
    for strand, starts in (("+", plus), ("-", minus)):
        codes = strand_codes(seq, strand)
        bins = np.arange(n_bins(n)) * STEP
        genomic = to_strand(bins, n, strand)
        labels = bin_labels(to_strand(starts, n, strand), n, SETTINGS.reach)
        parts.append((padded(codes, SETTINGS), labels, genomic))
    base = np.cumsum([0, len(parts[0][0])])
    sequence = np.concatenate([p[0] for p in parts])
    offsets = np.concatenate([b + STEP * np.arange(len(p[1])) for b, p in zip(base, parts)])
    labels = np.concatenate([p[1] for p in parts])
    genomic = np.concatenate([p[2] for p in parts])
    train = np.flatnonzero(genomic < 0.7 * n - SETTINGS.context)
    test = np.flatnonzero(genomic >= 0.7 * n + SETTINGS.context)
    model = PromoterModel.fit(sequence, offsets[train], labels[train], SETTINGS)
    examples = sequence[offsets[:, None] + np.arange(SETTINGS.context)]
    return model, examples, labels, train, test, seq, plus, minus


def test_the_supervised_model_places_a_planted_motif_by_strand_where_a_strand_blind_probe_cannot(trained):
    model, examples, labels, train, test, *_ = trained
    cnn = roc_auc_score(labels[test], model.score(examples[test]))
    as_bytes = lambda rows: [np.frombuffer(b"ACGTN", np.uint8)[r].tobytes() for r in rows]  # noqa: E731
    probe = LogisticRegression(max_iter=2000).fit(canonical_kmer_frequencies(as_bytes(examples[train]), 4), labels[train])
    blind = roc_auc_score(labels[test], probe.decision_function(canonical_kmer_frequencies(as_bytes(examples[test]), 4)))
    assert cnn >= 0.95 and blind <= 0.8, (cnn, blind)


def test_one_pass_along_a_contig_scores_every_bin_as_its_own_example(trained):
    model, examples, labels, *_ , seq, _, _ = trained
    n = len(seq)
    one_pass = np.concatenate([model.strand_track(strand_codes(seq, strand), chunk_bins=1000) for strand in "+-"])
    assert len(one_pass) == 2 * n_bins(n)
    assert np.allclose(one_pass, model.score(examples), atol=1e-4)


def test_stranded_tracks_put_a_minus_strand_promoter_on_minus(trained):
    model, *_, seq, plus, minus = trained
    n = len(seq)
    tracks = {s: model.strand_track(strand_codes(seq, s)) for s in "+-"}
    positions = {s: to_strand(np.arange(n_bins(n)) * STEP, n, s) for s in "+-"}
    for strand, other, starts in (("+", "-", plus), ("-", "+", minus)):
        starts = starts[starts > 0.7 * n]
        wins = [tracks[strand][np.abs(positions[strand] - s) <= SETTINGS.reach].max()
                > tracks[other][np.abs(positions[other] - s) <= SETTINGS.reach].max() for s in starts]
        assert np.mean(wins) >= 0.9, (strand, np.mean(wins))


def test_bin_labels_mark_bins_a_start_lies_downstream_of_on_each_strand():
    n = 300
    plus = bin_labels(np.array([150]), n, 60)
    assert (np.flatnonzero(plus) * STEP).tolist() == [96, 104, 112, 120, 128, 136, 144]
    minus = bin_labels(to_strand(np.array([150]), n, "-"), n, 60)  # strand coordinates: 149
    assert to_strand(np.flatnonzero(minus) * STEP, n, "-").tolist() == [203, 195, 187, 179, 171, 163, 155]
    assert not bin_labels(np.array([], dtype=np.int64), n, 60).any()  # a contig without genes on a strand


def test_negatives_are_drawn_from_coding_and_other_bins_in_the_stated_ratio():
    from genembed.reports.supervised import draw_negatives

    rng = np.random.default_rng(0)
    negatives = np.arange(10_000)
    coding = np.arange(10_000) < 9_000  # 90% coding, as in a bacterium
    drawn = draw_negatives(negatives, coding, 2_000, 0.5, rng)
    assert len(np.unique(drawn)) == 2_000 and coding[drawn].mean() == 0.5
    assert coding[draw_negatives(negatives, coding, 1_000, 0.2, rng)].mean() == pytest.approx(0.2)
    # a group that runs short is topped up from the other: 1,000 non-coding bins, 3,000 asked at 50%
    drawn = draw_negatives(negatives, coding, 3_000, 0.5, rng)
    assert len(np.unique(drawn)) == 3_000 and (~coding[drawn]).sum() == 1_000
    # no ratio: drawn as they come
    assert 0.85 < coding[draw_negatives(negatives, coding, 2_000, None, rng)].mean() < 0.95
    assert 0.85 < coding[draw_negatives(negatives, None, 2_000, 0.5, rng)].mean() < 0.95


def test_a_bin_is_coding_when_its_base_lies_in_a_cds_on_either_strand():
    import polars as pl

    from genembed.data.annotation import Coverage
    from genembed.reports.stranded import coding_bins

    cds = Coverage(pl.DataFrame({"contig": ["c"], "start": [100], "end": [200]}))
    plus = coding_bins(cds, "c", 400, "+")
    assert np.flatnonzero(plus).tolist() == list(range(13, 25))  # bins at 104 .. 192
    minus = coding_bins(cds, "c", 400, "-")  # bin j sits at base 399 - 8 j
    assert minus.tolist() == [100 <= 399 - STEP * j < 200 for j in range(n_bins(400))]  # bins at 199 .. 103
    assert coding_bins(None, "c", 400, "+") is None
