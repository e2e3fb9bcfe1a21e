"""Promoter prediction at 10-bp resolution on each strand (issue 29): the supervised model
(`genembed.reports.supervised`) against AT content, 4-mer frequencies and the default model's frozen
pooled vectors (logistic regression on each), on the same examples, for the bundled E. coli K-12 (operon
heads: `--operon-gap`) and the C. elegans and A. thaliana slices (every gene start). Not a test: it
prints numbers.

An example is one bin and strand (see the supervised module); training uses the first 80% of each
contig, scoring the last 20% (examples straddling the border dropped: no shared sequence). Logistic
regressions see at most ``--max-train`` examples. Intervals: 95% block bootstrap over 10-kb blocks.

    .venv/bin/python benchmarks/promoters.py [--genomes E.coli,C.elegans,A.thaliana] [--epochs 3] [--embeddings]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import polars as pl
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from genembed.annotation import gene_starts, read_annotation
from genembed.reports.supervised import CnnSettings, PromoterModel, contexts, stranded_labels
from genembed.windows import kmer_frequencies

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "resources/example"
GENOMES = {"E.coli": (EXAMPLE / "ecoli_k12_mg1655.fna.gz", EXAMPLE / "ecoli_k12_mg1655.gff.gz", True),
           "C.elegans": (EXAMPLE / "C.elegans.fa.gz", EXAMPLE / "C.elegans.gff.gz", False),
           "A.thaliana": (EXAMPLE / "A.thaliana.fa.gz", EXAMPLE / "A.thaliana.gff.gz", False)}


def read_fasta(path: Path) -> dict[str, bytes]:
    with gzip.open(path, "rb") as fh:
        records = fh.read().split(b">")[1:]
    return {r.split(b"\n", 1)[0].split()[0].decode(): b"".join(r.split(b"\n")[1:]).upper() for r in records}


def examples(fasta: Path, gff: Path, operon_gap: int, s: CnnSettings):
    """Contexts, labels, held-out flags (None: straddles the border) and 10-kb block ids."""
    contigs = read_fasta(fasta)
    starts = gene_starts(read_annotation(gff), operon_gap)
    seqs, labels, split, block = [], [], [], []
    for n, (name, seq) in enumerate(contigs.items()):
        bins = np.arange(0, len(seq), s.step)
        border = int(0.8 * len(seq))
        test = bins - s.context >= border
        train = bins + s.context < border
        for strand in "+-":
            tss = starts.filter((pl.col("contig") == name) & (pl.col("strand") == strand))["tss"].to_numpy()
            seqs += contexts(seq, bins, strand, s)
            labels.append(stranded_labels(tss, bins, strand, s.reach))
            split.append(np.where(test, 1, np.where(train, 0, -1)))
            block.append(n * 100_000 + bins // 10_000)
    return seqs, np.concatenate(labels), np.concatenate(split), np.concatenate(block)


def metrics(y: np.ndarray, score: np.ndarray) -> tuple[float, float, float]:
    p, r, _ = precision_recall_curve(y, score)
    return roc_auc_score(y, score), average_precision_score(y, score), float(p[r >= 0.5].max())


def bootstrap(y, score, blocks, n: int = 200, seed: int = 0) -> list[tuple[float, float]]:
    rng = np.random.default_rng(seed)
    ids, inverse = np.unique(blocks, return_inverse=True)
    members = [np.flatnonzero(inverse == i) for i in range(len(ids))]
    draws = []
    for _ in range(n):
        rows = np.concatenate([members[i] for i in rng.integers(0, len(ids), len(ids))])
        if 0 < y[rows].sum() < len(rows):
            draws.append(metrics(y[rows], score[rows]))
    d = np.array(draws)
    return [(float(np.percentile(d[:, j], 2.5)), float(np.percentile(d[:, j], 97.5))) for j in range(3)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", default=",".join(GENOMES))
    parser.add_argument("--operon-gap", type=int, default=50, help="E. coli: operon heads only (0: every gene)")
    parser.add_argument("--epochs", type=int, default=CnnSettings.epochs)
    parser.add_argument("--max-train", type=int, default=60_000)
    parser.add_argument("--embeddings", action="store_true", help="also the default model's frozen probe (slow)")
    args = parser.parse_args()
    s = CnnSettings(epochs=args.epochs)
    rng = np.random.default_rng(0)
    rows = []
    for name in args.genomes.split(","):
        fasta, gff, bacterium = GENOMES[name]
        seqs, y, split, blocks = examples(fasta, gff, args.operon_gap if bacterium else 0, s)
        train, test = np.flatnonzero(split == 0), np.flatnonzero(split == 1)
        sub = rng.choice(train, min(len(train), args.max_train), replace=False)
        print(f"{name}: {len(y):,} examples (bins x strands), {y.mean():.1%} positive; train {len(train):,},"
              f" test {len(test):,}", flush=True)
        scores = {"AT content": np.array([1 - (x.count(b"G") + x.count(b"C")) / max(len(x), 1) for x in (seqs[i] for i in test)])}
        km = kmer_frequencies([seqs[i] for i in np.concatenate([sub, test])], 4)
        lr = LogisticRegression(max_iter=2000).fit(km[: len(sub)], y[sub])
        scores["4-mer LR"] = lr.decision_function(km[len(sub):])
        if args.embeddings:
            from genembed.models import ModelSpec
            from genembed.plan import RunPlan
            from genembed.tokenize import TokenizerSpec

            embed = RunPlan.make(ModelSpec(str(REPO / "resources/models/genembed-conv")), TokenizerSpec("kmer", 1),
                                 {"size": s.context, "stride": s.context // 2}).sequence_embedder()
            few = sub[:20_000]
            x = embed([seqs[i] for i in np.concatenate([few, test])])
            scores["frozen embedding LR"] = LogisticRegression(max_iter=2000).fit(x[: len(few)], y[few]).decision_function(x[len(few):])
        started = time.monotonic()
        model = PromoterModel.fit([seqs[i] for i in train], y[train], s)
        scores["supervised CNN"] = model.score([seqs[i] for i in test])
        print(f"  supervised CNN trained in {model.seconds:.0f} s, scored in {time.monotonic() - started - model.seconds:.0f} s",
              flush=True)
        for method, sc in scores.items():
            point = metrics(y[test], sc)
            ci = bootstrap(y[test], sc, blocks[test])
            rows.append([name, method] + [f"{v:.3f} ({lo:.3f}-{hi:.3f})" for v, (lo, hi) in zip(point, ci)])
            print("  " + " | ".join(rows[-1][1:]), flush=True)
    print("\n| genome | method | ROC-AUC | PR-AUC | precision at recall 0.5 |\n| --- | --- | --- | --- | --- |")
    for r in rows:
        print("| " + " | ".join(r) + " |")


if __name__ == "__main__":
    main()
