"""Classifier evaluation: calibrated logistic regression with contiguous cross-validation folds,
and ROC-AUC, PR-AUC, precision at a fixed recall and Brier score with block-bootstrap intervals."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METRICS = ("roc_auc", "pr_auc", "precision_at_recall", "brier")


@dataclass
class Calibrated:
    """Standardised logistic regression fitted on all training windows, its scores mapped to
    probabilities by Platt scaling fitted on out-of-fold scores (contiguous folds)."""

    model: object
    platt: object
    oof: np.ndarray  # calibrated out-of-fold probabilities of the training windows

    def predict(self, x: np.ndarray) -> np.ndarray:
        if len(x) == 0:  # a shard's track part may hold no window
            return np.zeros(0)
        score = self.model.decision_function(x).reshape(-1, 1)
        return self.platt.predict_proba(score)[:, 1]


def fit_calibrated(x: np.ndarray, y: np.ndarray, folds: int = 5, seed: int = 0) -> Calibrated:
    """Fit on windows in genome order; folds are contiguous runs of them, so neighbouring
    (overlapping) windows never sit on both sides of a fold."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    def base():  # Newton steps on the few hundred features at most: the same optimum as lbfgs, 5-10x faster
        return make_pipeline(StandardScaler(), LogisticRegression(solver="newton-cholesky", max_iter=200,
                                                                  random_state=seed))

    scores = np.empty(len(y))
    for part in np.array_split(np.arange(len(y)), folds):
        train = np.setdiff1d(np.arange(len(y)), part)
        if len(np.unique(y[train])) < 2:  # a fold without positives: score it with a model on all windows
            scores[part] = base().fit(x, y).decision_function(x[part])
        else:
            scores[part] = base().fit(x[train], y[train]).decision_function(x[part])
    platt = LogisticRegression().fit(scores.reshape(-1, 1), y)
    oof = platt.predict_proba(scores.reshape(-1, 1))[:, 1]
    return Calibrated(base().fit(x, y), platt, oof)


class Ranked:
    """Scores of one model on the test windows, sorted once; metrics for any window weights
    (a bootstrap resample is a vector of multiplicities) in linear time. Matches scikit-learn's
    roc_auc_score and average_precision_score with sample weights, ties included."""

    def __init__(self, truth: np.ndarray, score: np.ndarray):
        self.order = np.argsort(-score, kind="mergesort")
        self.s = score[self.order]
        self.y = truth[self.order].astype(np.float64)
        self.sq_err = (self.s - self.y) ** 2

    def metrics(self, weights: np.ndarray | None, recall: float) -> dict[str, float]:
        s, y, sq_err = self.s, self.y, self.sq_err
        w = np.ones(len(y))
        if weights is not None:  # windows left out of a resample do not count, as in scikit-learn
            w = weights[self.order].astype(np.float64)
            keep = w > 0
            s, y, sq_err, w = s[keep], y[keep], sq_err[keep], w[keep]
        last = np.r_[np.flatnonzero(np.diff(s)), len(s) - 1]  # last index of each group of tied scores
        tp = np.cumsum(w * y)[last]
        fp = np.cumsum(w * (1 - y))[last]
        pos, neg = tp[-1], fp[-1]
        if pos == 0 or neg == 0:
            return dict.fromkeys(METRICS, float("nan"))
        tpr, fpr = np.r_[0, tp / pos], np.r_[0, fp / neg]
        precision = tp / (tp + fp)
        rec = tp / pos
        return {
            "roc_auc": float(np.trapezoid(tpr, fpr)),
            "pr_auc": float(np.sum(np.diff(np.r_[0, rec]) * precision)),
            "precision_at_recall": float(precision[rec >= recall].max()),
            "brier": float(np.sum(w * sq_err) / w.sum()),
        }


def block_bootstrap(truth: np.ndarray, scores: dict[str, np.ndarray], blocks: np.ndarray, recall: float,
                    n_boot: int, seed: int) -> tuple[dict[str, dict[str, float]], dict[str, np.ndarray]]:
    """Point estimates per model, and ``n_boot`` paired resamples of each metric (rows = resamples).

    Windows are resampled in blocks (``blocks`` = a block id per window, e.g. 10-kb stretches), so
    the intervals account for neighbouring windows being alike. Resamples of one class are dropped."""
    ranked = {name: Ranked(truth, s) for name, s in scores.items()}
    point = {name: r.metrics(None, recall) for name, r in ranked.items()}
    ids, block_of = np.unique(blocks, return_inverse=True)
    rng = np.random.default_rng(seed)
    draws = {f"{name}:{m}": [] for name in scores for m in METRICS}
    for _ in range(n_boot):
        counts = np.bincount(rng.integers(0, len(ids), len(ids)), minlength=len(ids))
        w = counts[block_of]
        got = {name: r.metrics(w, recall) for name, r in ranked.items()}
        if any(np.isnan(v["roc_auc"]) for v in got.values()):
            continue
        for name, vals in got.items():
            for m in METRICS:
                draws[f"{name}:{m}"].append(vals[m])
    return point, {k: np.asarray(v) for k, v in draws.items()}


def interval(samples: np.ndarray, level: float = 0.95) -> tuple[float, float]:
    """Percentile interval of bootstrap samples (nan when there are none)."""
    if len(samples) == 0:
        return float("nan"), float("nan")
    lo, hi = np.quantile(samples, [(1 - level) / 2, (1 + level) / 2])
    return float(lo), float(hi)


def verdict(lo: float, hi: float) -> str:
    """What a 95% interval of a difference (embeddings minus a baseline) says."""
    return "better" if lo > 0 else "worse" if hi < 0 else "no clear difference"


def threshold_at_recall(truth: np.ndarray, prob: np.ndarray, recall: float) -> float:
    """The highest probability threshold whose recall on (``truth``, ``prob``) reaches ``recall``."""
    positives = np.sort(prob[truth.astype(bool)])[::-1]
    if len(positives) == 0:
        return 1.0
    return float(positives[max(0, int(np.ceil(recall * len(positives))) - 1)])
