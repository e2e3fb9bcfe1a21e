"""Promoter-prediction report: labels from the annotation, a held-out part of the genome (whole
contigs or a contiguous region, never random windows), logistic regression on the embeddings
beside a k-mer-frequency baseline on the same split, ROC/PR curves and a genome-wide bedGraph."""

from __future__ import annotations

import contextlib
import logging
import os
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import polars as pl

from ..errors import GenembedError
from ..genome import Genome
from ..io import atomic_path
from ..windows import encode, window_sequences
from . import html
from .data import GenomeInputs, iter_labeled, make_labelers

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class PromoterSettings:
    upstream: int = 200
    downstream: int = 50
    test_fraction: float = 0.2
    split: str = "auto"  # auto | contigs | region
    kmer: int = 4
    max_train: int = 50_000
    seed: int = 0


def held_out(genome: GenomeInputs, settings: PromoterSettings) -> dict[str, tuple[int, int]]:
    """Held-out intervals per contig: whole contigs where no contig is larger than the held-out
    share (many chromosomes), otherwise the last ``test_fraction`` of each contig."""
    fasta = Genome(genome.fasta)
    contigs = fasta.contigs
    fasta.close()
    total = sum(contigs.values())
    target = settings.test_fraction * total
    mode = settings.split
    if mode == "auto":
        mode = "contigs" if len(contigs) >= 3 and max(contigs.values()) <= target else "region"
    if mode == "region":
        return {c: (int(n * (1 - settings.test_fraction)), n) for c, n in contigs.items()}
    if mode != "contigs":
        raise GenembedError(f"promoters.split must be auto, contigs or region, not {settings.split!r}")
    rng = np.random.default_rng(settings.seed)
    names = list(contigs)
    chosen: dict[str, tuple[int, int]] = {}
    acc = 0
    for i in rng.permutation(len(names)):  # whole contigs until the share is reached, never overshooting 2x
        if acc >= target or len(chosen) == len(names) - 1:
            break
        if acc + contigs[names[i]] <= 2 * target:
            chosen[names[i]] = (0, contigs[names[i]])
            acc += contigs[names[i]]
    if not chosen:
        raise GenembedError(f"{genome.name}: no contig fits the held-out share; use promoters.split: region")
    return chosen


def split_of(table: pl.DataFrame, test: dict[str, tuple[int, int]]) -> np.ndarray:
    """0 = train, 1 = test, -1 = straddles the border (dropped so no sequence is shared)."""
    contigs = table["contig"].to_numpy()
    starts, ends = table["start"].to_numpy(), table["end"].to_numpy()
    out = np.zeros(len(table), dtype=np.int8)
    for contig, (lo, hi) in test.items():
        rows = contigs == contig
        inside = rows & (starts >= lo) & (ends <= hi)
        out[rows & (ends > lo) & (starts < hi)] = -1
        out[inside] = 1
    return out


def kmer_frequencies(seqs: list[bytes], k: int) -> np.ndarray:
    """Frequencies of the 4^k k-mers (ACGT only) in each sequence, vectorised per sequence."""
    out = np.zeros((len(seqs), 4 ** k), dtype=np.float32)
    powers = 4 ** np.arange(k - 1, -1, -1)
    for i, seq in enumerate(seqs):
        codes = encode(seq)
        if len(codes) < k:
            continue
        view = np.lib.stride_tricks.sliding_window_view(codes, k)
        ok = (view < 4).all(axis=1)
        counts = np.bincount(view[ok].astype(np.int64) @ powers, minlength=4 ** k)
        out[i] = counts / max(counts.sum(), 1)
    return out


def promoter_report(genomes: list[GenomeInputs], out_dir: str | Path, settings: PromoterSettings,
                    stride: int) -> pl.DataFrame:
    """Write promoters.html, metrics.tsv, curve PNGs and ``{genome}.bedgraph`` to ``out_dir``.

    ``stride`` is the window stride: bedGraph bins are the central ``stride`` bp of each window."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import average_precision_score, roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    labelers = make_labelers(genomes, settings.upstream, settings.downstream)
    if not any(labelers.values()):
        raise GenembedError("promoter report: no genome has an annotation (add a GFF/GTF to the genome sheet)")
    tests = {g.name: held_out(g, settings) for g in genomes if labelers[g.name] is not None}
    fastas = {g.name: Genome(g.fasta) for g in genomes}
    rng = np.random.default_rng(settings.seed)

    # Pass 1: training sample (embeddings and k-mer features of the same windows).
    n_train = sum(int((split_of(pl.read_parquet(w, columns=["contig", "start", "end"]), tests[g.name]) == 0).sum())
                  for g in genomes if labelers[g.name] is not None for w in g.windows)
    keep = min(1.0, settings.max_train / max(n_train, 1))
    x_emb, x_kmer, y = [], [], []
    for g, table, emb in iter_labeled(genomes, labelers):
        if labelers[g.name] is None:
            continue
        pick = (split_of(table, tests[g.name]) == 0) & (rng.random(len(table)) < keep)
        if pick.any():
            rows = table.filter(pl.Series(pick))
            x_emb.append(emb[pick])
            x_kmer.append(kmer_frequencies(list(window_sequences(fastas[g.name], rows)), settings.kmer))
            y.append(rows["promoter"].to_numpy())
    if not y:
        raise GenembedError("promoter report: no annotated window falls in the training part; check the annotation")
    y_train = np.concatenate(y)
    if len(np.unique(y_train)) < 2:
        raise GenembedError("promoter report: the training windows are all of one class; check the annotation")
    models = {}
    for name, x in (("embeddings", np.concatenate(x_emb)), (f"{settings.kmer}-mer frequencies", np.concatenate(x_kmer))):
        clf = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, class_weight="balanced"))
        models[name] = clf.fit(x, y_train)
    emb_name, kmer_name = list(models)

    # Pass 2: score every window; keep held-out scores for evaluation; write bedGraphs.
    scores: dict[str, list[np.ndarray]] = {n: [] for n in models}
    y_test: list[np.ndarray] = []
    with contextlib.ExitStack() as stack:
        tracks = {g.name: stack.enter_context(_BedGraph(out / f"{g.name}.bedgraph", g.name, stride)) for g in genomes}
        for g, table, emb in iter_labeled(genomes, labelers):
            prob = models[emb_name].predict_proba(emb)[:, 1]
            tracks[g.name].write(table.select("contig", "start", "end").with_columns(pl.Series("score", prob)))
            if labelers[g.name] is None:
                continue
            test = split_of(table, tests[g.name]) == 1
            if test.any():
                rows = table.filter(pl.Series(test))
                scores[emb_name].append(prob[test])
                kmers = kmer_frequencies(list(window_sequences(fastas[g.name], rows)), settings.kmer)
                scores[kmer_name].append(models[kmer_name].predict_proba(kmers)[:, 1])
                y_test.append(rows["promoter"].to_numpy())
    for f in fastas.values():
        f.close()
    if not y_test:
        raise GenembedError("promoter report: no window falls in the held-out part; lower the window size or raise test_fraction")
    truth = np.concatenate(y_test)
    if len(np.unique(truth)) < 2:
        raise GenembedError("promoter report: the held-out windows are all of one class")
    metrics = pl.DataFrame([
        {"model": n, "roc_auc": float(roc_auc_score(truth, np.concatenate(s))),
         "pr_auc": float(average_precision_score(truth, np.concatenate(s))),
         "test_windows": int(len(truth)), "test_positive_fraction": float(truth.mean()),
         "train_windows": int(len(y_train))}
        for n, s in scores.items()
    ])
    with atomic_path(out / "metrics.tsv") as t:
        metrics.write_csv(t, separator="\t", float_precision=4)
    figs = _curves(truth, {n: np.concatenate(s) for n, s in scores.items()}, out)
    _write_html(out / "promoters.html", metrics, figs, settings, tests, genomes)
    return metrics


class _BedGraph:
    """A bedGraph written shard by shard (shards come in genome order), renamed into place at the end.
    Each window's score goes on its central ``stride``-wide bin, so bins never overlap."""

    def __init__(self, path: Path, genome: str, stride: int):
        self.path, self.stride = path, stride
        self.tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
        self.header = (f'track type=bedGraph name="{genome} promoter score" description="genembed promoter '
                       f'probability (logistic regression on embeddings)" visibility=full autoScale=off viewLimits=0:1\n')

    def __enter__(self) -> "_BedGraph":
        self.fh = open(self.tmp, "w")
        self.fh.write(self.header)
        return self

    def write(self, scores: pl.DataFrame) -> None:
        width = pl.min_horizontal(pl.col("end") - pl.col("start"), pl.lit(self.stride))
        bins = scores.with_columns((pl.col("start") + (pl.col("end") - pl.col("start") - width) // 2).alias("start")) \
            .with_columns((pl.col("start") + width).alias("end"))
        self.fh.write(bins.select("contig", "start", "end", pl.col("score").round(4))
                      .write_csv(separator="\t", include_header=False))

    def __exit__(self, kind, *_) -> None:
        self.fh.close()
        if kind is None:
            os.replace(self.tmp, self.path)
        else:
            self.tmp.unlink(missing_ok=True)


def _curves(truth: np.ndarray, scores: dict[str, np.ndarray], out: Path) -> dict[str, str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.metrics import precision_recall_curve, roc_curve

    figs = {}
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        fpr, tpr, _ = roc_curve(truth, s)
        ax.plot(fpr, tpr, label=name)
    ax.plot([0, 1], [0, 1], color="#999", linestyle="--", label="chance")
    ax.set_xlabel("false positive rate")
    ax.set_ylabel("true positive rate")
    ax.set_title("ROC, held-out windows")
    ax.legend(loc="lower right", fontsize=8)
    figs["roc"] = html.save_figure(fig, out / "roc.png")
    fig, ax = plt.subplots(figsize=(5.5, 5))
    for name, s in scores.items():
        precision, recall, _ = precision_recall_curve(truth, s)
        ax.plot(recall, precision, label=name)
    ax.axhline(truth.mean(), color="#999", linestyle="--", label="positive fraction")
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    ax.set_title("Precision-recall, held-out windows")
    ax.legend(loc="upper right", fontsize=8)
    figs["pr"] = html.save_figure(fig, out / "pr.png")
    return figs


def _write_html(path: Path, metrics: pl.DataFrame, figs: dict[str, str], settings: PromoterSettings,
                tests: dict[str, dict[str, tuple[int, int]]], genomes: list[GenomeInputs]) -> None:
    emb = metrics.row(0, named=True)
    base = metrics.row(1, named=True)
    if emb["roc_auc"] > base["roc_auc"] and emb["pr_auc"] > base["pr_auc"]:
        verdict = f"The embeddings beat the {base['model']} baseline on both ROC-AUC and PR-AUC."
    else:
        verdict = (f"The embeddings do <b>not</b> beat the {base['model']} baseline on held-out windows "
                   f"(ROC-AUC {emb['roc_auc']:.3f} vs {base['roc_auc']:.3f}, PR-AUC {emb['pr_auc']:.3f} vs {base['pr_auc']:.3f}).")
    held = "; ".join(f"{g}: " + ", ".join(f"{c}:{lo:,}-{hi:,}" for c, (lo, hi) in t.items()) for g, t in tests.items())
    methods = (
        f"<p>A window is <b>positive</b> when it overlaps the region from {settings.upstream} bp upstream to "
        f"{settings.downstream} bp downstream of a gene start (strand-aware; GFF3/GTF <code>gene</code> "
        f"features, transcripts where there are none). Held-out part (never seen in training; windows "
        f"straddling its border are dropped): {held}. Classifiers: standardised features, logistic "
        f"regression with balanced class weights (scikit-learn), trained on up to {settings.max_train:,} "
        f"training windows; the baseline uses {settings.kmer}-mer frequencies of the same windows. "
        f"The bedGraph tracks give the embedding model's probability for every window (training windows "
        f"included), on each window's central bin. Caveat: the held-out part is unseen by the classifiers, "
        f"but the language model itself may have seen it in pretraining (the bundled demonstration model "
        f"was trained on the whole E. coli genome), and related genomes in the same run can share "
        f"homologous sequence with it.</p><p class='muted'>Settings: {asdict(settings)}</p>"
    )
    sections = [
        ("Result", f"<p class='note'>{verdict}</p>" + html.table(metrics)),
        ("Curves", html.grid(figs["roc"], figs["pr"])),
        ("Methods", methods),
        ("Tracks", "<ul>" + "".join(f"<li><code>{g.name}.bedgraph</code></li>" for g in genomes) + "</ul>"),
    ]
    html.page("genembed promoter-prediction report", sections, path)
