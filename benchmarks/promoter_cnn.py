"""Issue 29 exploration: does a small supervised CNN on the sequence place bacterial promoters, where a
linear probe on pooled vectors barely beats AT content? Stranded, at 10-bp resolution, on the bundled
E. coli K-12 with its GFF. Not a test: it prints numbers.

Each bin (every ``--step`` bp) and strand is an example: the ``--context`` bp read on that strand
ending ``--after`` bp past the bin. It is a promoter when an operon's first gene (same-strand runs with
gaps up to ``--operon-gap`` bp, `genembed.annotation.operon_heads`) starts on that strand 0-``--reach``
bp downstream of the bin. Trained on the first 80% of the chromosome, scored on the last 20% (no
shared sequence: examples straddling the border dropped). Baselines on the same examples: AT content,
4-mer frequencies (logistic regression) and, with ``--embeddings``, the bundled default's pooled
vectors of the same context (logistic regression: the report's frozen probe).

    .venv/bin/python benchmarks/promoter_cnn.py [--epochs 4] [--embeddings]
"""

from __future__ import annotations

import argparse
import gzip
import time
from pathlib import Path

import numpy as np
import polars as pl
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import average_precision_score, precision_recall_curve, roc_auc_score

from genembed.annotation import gene_starts, read_annotation
from genembed.tokenize import reverse_complement
from genembed.windows import encode, kmer_frequencies

REPO = Path(__file__).resolve().parents[1]
FASTA, GFF = REPO / "resources/example/ecoli_k12_mg1655.fna.gz", REPO / "resources/example/ecoli_k12_mg1655.gff.gz"


def examples(seq: bytes, starts: pl.DataFrame, args) -> tuple[list[bytes], np.ndarray, np.ndarray]:
    """Contexts (strand-oriented), labels and bin positions of both strands."""
    n = len(seq)
    bins = np.arange(args.context, n - args.context, args.step)
    seqs, labels, where = [], [], []
    for strand in "+-":
        tss = np.sort(starts.filter(pl.col("strand") == strand)["tss"].to_numpy())
        for b in bins:
            if strand == "+":
                ctx = seq[b + args.after - args.context : b + args.after]
                lo, hi = b, b + args.reach  # a gene start 0-reach bp downstream (to the right)
            else:
                ctx = reverse_complement(seq[b - args.after : b - args.after + args.context])
                lo, hi = b - args.reach, b
            i = np.searchsorted(tss, lo)
            labels.append(i < len(tss) and tss[i] <= hi)
            seqs.append(ctx)
            where.append(b)
    return seqs, np.array(labels), np.array(where)


class CNN(torch.nn.Module):
    def __init__(self, width: int = 64):
        super().__init__()
        self.net = torch.nn.Sequential(
            torch.nn.Conv1d(4, width, 15, padding=7), torch.nn.ReLU(), torch.nn.MaxPool1d(4),
            torch.nn.Conv1d(width, width, 7, padding=3), torch.nn.ReLU(), torch.nn.Dropout(0.2),
            torch.nn.Conv1d(width, width, 7, padding=3), torch.nn.ReLU())
        self.head = torch.nn.Linear(2 * width, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.net(x)
        return self.head(torch.cat([h.amax(-1), h.mean(-1)], 1))[:, 0]


def one_hot(seqs: list[bytes]) -> torch.Tensor:
    codes = np.stack([encode(s) for s in seqs])
    out = np.zeros((len(seqs), 5, codes.shape[1]), dtype=np.float32)
    np.put_along_axis(out, codes[:, None, :].astype(np.int64), 1.0, axis=1)
    return torch.from_numpy(out[:, :4])


def report(name: str, y: np.ndarray, score: np.ndarray) -> None:
    p, r, _ = precision_recall_curve(y, score)
    at_half = p[r >= 0.5].max()
    print(f"{name:28s} ROC-AUC {roc_auc_score(y, score):.3f}  PR-AUC {average_precision_score(y, score):.3f}"
          f"  precision at recall 0.5 {at_half:.3f}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--step", type=int, default=10)
    parser.add_argument("--context", type=int, default=200)
    parser.add_argument("--after", type=int, default=50, help="bp of the context past the bin (downstream)")
    parser.add_argument("--reach", type=int, default=100, help="a gene start this far downstream of a bin labels it")
    parser.add_argument("--operon-gap", type=int, default=50)
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--negatives", type=int, default=4, help="negatives per positive in each epoch")
    parser.add_argument("--embeddings", action="store_true", help="also the default model's frozen probe (slow)")
    args = parser.parse_args()
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    with gzip.open(FASTA, "rb") as fh:
        seq = b"".join(fh.read().split(b">")[1].split(b"\n")[1:]).upper()
    feats = read_annotation(GFF)
    contig = feats["contig"][0]
    starts = gene_starts(feats.filter(pl.col("contig") == contig), args.operon_gap)
    seqs, y, where = examples(seq, starts, args)
    border = int(len(seq) * 0.8)
    test = where - args.context >= border
    train = where + args.context < border
    print(f"{len(starts)} gene starts; {len(y):,} examples, {y.mean():.1%} positive; train {train.sum():,}, test {test.sum():,}")
    idx_tr, idx_te = np.flatnonzero(train), np.flatnonzero(test)
    y_te = y[idx_te]

    at = np.array([1 - (s.count(b"G") + s.count(b"C")) / len(s) for s in seqs])
    report("AT content", y_te, at[idx_te])
    sub = rng.choice(idx_tr, min(len(idx_tr), 60_000), replace=False)
    km = kmer_frequencies([seqs[i] for i in np.concatenate([sub, idx_te])], 4)
    lr = LogisticRegression(max_iter=2000, C=1.0).fit(km[: len(sub)], y[sub])
    report("4-mer LR", y_te, lr.decision_function(km[len(sub):]))

    if args.embeddings:
        from genembed.models import ModelSpec
        from genembed.plan import RunPlan
        from genembed.tokenize import TokenizerSpec

        embed = RunPlan.make(ModelSpec(str(REPO / "resources/models/genembed-conv")), TokenizerSpec("kmer", 1),
                             {"size": args.context, "stride": args.context // 2}).sequence_embedder()
        sub_e = sub[:20_000]
        te_e = idx_te[rng.permutation(len(idx_te))[:30_000]]
        xe = embed([seqs[i] for i in np.concatenate([sub_e, te_e])])
        lr_e = LogisticRegression(max_iter=2000, C=1.0).fit(xe[: len(sub_e)], y[sub_e])
        report("embedding LR (30k test)", y[te_e], lr_e.decision_function(xe[len(sub_e):]))
        report("4-mer LR (same 30k)", y[te_e], lr.decision_function(km[len(sub):])[np.searchsorted(idx_te, te_e)])

    x = one_hot(seqs)
    model = CNN()
    opt = torch.optim.AdamW(model.parameters(), 2e-3, weight_decay=1e-2)
    pos, neg = idx_tr[y[idx_tr]], idx_tr[~y[idx_tr]]
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        ep = np.concatenate([pos, rng.choice(neg, args.negatives * len(pos), replace=False)])
        ep = ep[rng.permutation(len(ep))]
        for i in range(0, len(ep), 256):
            b = ep[i : i + 256]
            loss = torch.nn.functional.binary_cross_entropy_with_logits(model(x[b]), torch.from_numpy(y[b].astype(np.float32)))
            opt.zero_grad()
            loss.backward()
            opt.step()
        model.eval()
        with torch.no_grad():
            s = torch.cat([model(x[idx_te[i : i + 4096]]) for i in range(0, len(idx_te), 4096)]).numpy()
        report(f"CNN epoch {epoch + 1} ({time.time() - t0:.0f} s)", y_te, s)


if __name__ == "__main__":
    main()
