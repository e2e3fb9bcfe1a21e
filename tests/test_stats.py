import numpy as np
import pytest
from sklearn.metrics import average_precision_score, brier_score_loss, precision_recall_curve, roc_auc_score

from genembed.reports.stats import Ranked, block_bootstrap, fit_calibrated, interval, threshold_at_recall


def _data(n=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    p = 1 / (1 + np.exp(-(1.5 * x[:, 0] - 2.0)))  # about 20% positives
    return x, (rng.random(n) < p).astype(int), p


def test_weighted_metrics_match_scikit_learn_with_ties_and_zero_weights():
    rng = np.random.default_rng(3)
    y = (rng.random(800) < 0.25).astype(int)
    s = np.round(rng.random(800) * 0.6 + 0.3 * y, 2)  # many tied scores
    w = rng.integers(0, 3, 800)  # a bootstrap resample: multiplicities, zeros included
    got = Ranked(y, s).metrics(w, recall=0.6)
    precision, recall, _ = precision_recall_curve(y, s, sample_weight=w)
    assert got["roc_auc"] == pytest.approx(roc_auc_score(y, s, sample_weight=w))
    assert got["pr_auc"] == pytest.approx(average_precision_score(y, s, sample_weight=w))
    assert got["precision_at_recall"] == pytest.approx(precision[recall >= 0.6].max())
    assert got["brier"] == pytest.approx(brier_score_loss(y, s, sample_weight=w))


def test_calibrated_probabilities_match_observed_frequencies_on_new_data():
    x, y, _ = _data(4000, seed=1)
    model = fit_calibrated(x, y)
    xt, yt, pt = _data(20000, seed=2)
    prob = model.predict(xt)
    assert prob.mean() == pytest.approx(yt.mean(), abs=0.01)
    for lo, hi in ((0.0, 0.1), (0.1, 0.3), (0.3, 1.0)):  # reliability: observed rate within each predicted band
        band = (prob >= lo) & (prob < hi)
        assert yt[band].mean() == pytest.approx(prob[band].mean(), abs=0.03)
    assert abs(model.oof.mean() - y.mean()) < 0.01


def test_bootstrap_intervals_cover_the_estimate_and_narrow_with_more_data():
    widths = []
    for n in (500, 8000):
        x, y, p = _data(n, seed=4)
        blocks = np.arange(n) // 10
        point, draws = block_bootstrap(y, {"true p": p, "noise": np.random.default_rng(0).random(n)}, blocks, 0.5, 300, 0)
        lo, hi = interval(draws["true p:roc_auc"])
        assert lo <= point["true p"]["roc_auc"] <= hi
        nlo, nhi = interval(draws["noise:roc_auc"])
        assert nlo < 0.5 < nhi  # a random score is not called better than chance
        assert lo > nhi  # the informative score is clearly better
        widths.append(hi - lo)
    assert widths[1] < widths[0] / 2


def test_threshold_at_recall_reaches_the_recall():
    x, y, p = _data(3000, seed=5)
    t = threshold_at_recall(y, p, 0.5)
    assert (p[y == 1] >= t).mean() >= 0.5 and (p[y == 1] > t).mean() < 0.5
