"""Issue 28 exploration: the default model's window vectors concatenated with strand-canonical k-mer
frequencies (each block unit length, the k-mer block centred on the uniform frequency), weighted so
that the k-mer block carries a share ``w`` of the cosine, on `benchmarks/quality.py`'s held-out
windows (C. elegans IV, V, X; A. thaliana Chr4, Chr5: no bundled model saw them). Embeddings only:
the baselines are in quality.py's table. Not a test: it prints numbers.

With ``--project D`` the k-mer block is first projected onto D random directions (Gaussian, seeded):
what a model block of D channels could hold of it. With ``--table MODEL`` the projection is the
learned table of a model fused by `genembed tune --kmer-channels`. ``--mismatch W`` counts each k-mer
W toward its one-substitution neighbours (the mismatch kernel); ``--fixed-scales`` scales each block by
its median norm instead of each window's (what a fused model can do); a share of 1.0 scores the k-mer
block alone.

    .venv/bin/python benchmarks/kmer_concat.py [--k 6] [--weights 0.3,0.5,0.7] [--windows 2000] [--project 128]
        [--table MODEL] [--mismatch 0.05] [--fixed-scales]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import genembed.reports.evaluate as evaluation
from genembed.reports.evaluate import EvalSettings, canonical_kmer_frequencies, evaluate, reverse_complement
from genembed.data.windows import kmer_frequencies
from genembed.data.genome import Genome
from genembed.encode.models import ModelSpec
from genembed.encode.plan import RunPlan
from genembed.encode.tokenize import TokenizerSpec
from genembed.encode.scan import sequence_embedder
from quality import REPO, held_out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def mismatch_profile(seqs, k: int, weight: float) -> np.ndarray:
    """Strand-canonical k-mer frequencies in which each k-mer also counts ``weight`` toward every
    k-mer one substitution away (the mismatch kernel's features, k * 3 neighbours each)."""
    forward = kmer_frequencies(seqs, k).astype(np.float64)
    forward = forward + kmer_frequencies([reverse_complement(s) for s in seqs], k)
    cube = forward.reshape((len(seqs),) + (4,) * k)
    smooth = (1 - k * weight) * cube
    for axis in range(1, k + 1):
        smooth = smooth + weight * cube.sum(axis=axis, keepdims=True)
    return smooth.reshape(len(seqs), -1)[:, _canonical_columns(k)]


def _canonical_columns(k: int) -> np.ndarray:
    import itertools

    powers = 4 ** np.arange(k - 1, -1, -1)
    codes = np.array(list(itertools.product(range(4), repeat=k)))
    rc = (3 - codes[:, ::-1]) @ powers
    return np.unique(np.minimum(np.arange(4**k), rc))


def learned_table(folder: Path, k: int) -> np.ndarray:
    """The k-mer table of a model fused by `genembed tune --kmer-channels` (one row per canonical k-mer)."""
    from safetensors.numpy import load_file

    from genembed.encode.kmerbranch import canonical_columns

    rows = load_file(folder / "model.safetensors")["kmer.weight"][:-1].astype(np.float64)
    cols = canonical_columns(k)
    table = np.zeros((cols.max() + 1, rows.shape[1]))
    table[cols] = rows
    return table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "resources/models/genembed-conv"))
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--weights", default="0.3,0.5,0.7", help="the k-mer block's shares of the cosine")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--project", type=int, default=0, help="random projection of the k-mer block to this many dims")
    parser.add_argument("--hash", type=int, default=0,
                        help="feature-hash the k-mer block into this many dims (one signed bucket per k-mer)")
    parser.add_argument("--mismatch", type=float, default=0.0,
                        help="each k-mer also counts this much toward its one-substitution neighbours")
    parser.add_argument("--table", help="a model folder fused by `genembed tune --kmer-channels`: its learned k-mer table")
    parser.add_argument("--fixed-scales", action="store_true",
                        help="scale each block by its median norm over the windows, not each window to unit length"
                             " (what a model's mean-pooled channels can do)")
    args = parser.parse_args()
    n_kmers = canonical_kmer_frequencies([b"ACGT" * 10], args.k).shape[1]
    projection = np.random.default_rng(0).standard_normal((n_kmers, args.project)) if args.project else None
    if args.hash:
        rng = np.random.default_rng(0)
        projection = np.zeros((n_kmers, args.hash), dtype=np.float32)
        projection[np.arange(n_kmers), rng.integers(args.hash, size=n_kmers)] = rng.choice([-1.0, 1.0], size=n_kmers)
        args.project = args.hash
    if args.table:
        projection = learned_table(Path(args.table), args.k)
        args.project = projection.shape[1]
    evaluation.BASELINES = {}  # the hybrid only (quality.py scores the baselines on the same windows)
    with tempfile.TemporaryDirectory() as tmp:
        fastas = held_out(Path(tmp))
        plan = RunPlan.make(ModelSpec(args.model), TokenizerSpec("kmer", 1), {"size": 500, "stride": 250})
        embed = sequence_embedder(plan)
        genomes = {name: Genome(Path(path)) for name, path in fastas.items()}
        scales = (1.0, 1.0)
        if args.fixed_scales:  # median norms of each block on the first 500 sampled windows of the genomes
            probe = [g.fetch(c, i, i + 500) for g in genomes.values() for c in list(g.contigs)[:1] for i in range(0, 150_000, 500)]
            raw = canonical_kmer_frequencies(probe, args.k).astype(np.float64)
            raw = raw - raw.mean(1, keepdims=True)
            raw = raw @ projection if projection is not None else raw
            scales = (float(np.median(np.linalg.norm(embed(probe), axis=1))), float(np.median(np.linalg.norm(raw, axis=1))))
        for w in (float(x) for x in args.weights.split(",")):
            def hybrid(seqs, w=w):
                learned = np.asarray(embed(seqs), dtype=np.float64) if w < 1 else np.zeros((len(seqs), 1))
                counts = (mismatch_profile(seqs, args.k, args.mismatch) if args.mismatch
                          else canonical_kmer_frequencies(seqs, args.k).astype(np.float64))
                counts = counts - counts.mean(1, keepdims=True)
                counts = counts @ projection if projection is not None else counts
                if args.fixed_scales:
                    learned, counts = learned / scales[0], counts / scales[1]
                else:
                    learned, counts = unit(learned), unit(counts)
                return np.hstack([np.sqrt(1 - w) * learned, np.sqrt(w) * counts]).astype(np.float32)

            results, _ = evaluate(genomes, hybrid, 500, 250, EvalSettings(windows=args.windows), 0.1)
            shown = f" projected to {args.project} dims" if args.project else ""
            shown += " (learned)" if args.table else ""
            shown += " (hashed)" if args.hash else ""
            shown += ", blocks at fixed scales" if args.fixed_scales else ""
            shown += f" with one-mismatch weight {args.mismatch}" if args.mismatch else ""
            print(f"canonical {args.k}-mers{shown} at share {w}:", ", ".join(
                f"{r['measure']} {r['estimate']:.3f} ({r['low']:.3f}-{r['high']:.3f})" for r in results.iter_rows(named=True)),
                flush=True)


if __name__ == "__main__":
    main()
