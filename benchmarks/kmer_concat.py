"""Issue 28 exploration: the default model's window vectors concatenated with strand-canonical k-mer
frequencies (each block unit length, the k-mer block centred on the uniform frequency), weighted so
that the k-mer block carries a share ``w`` of the cosine, on `benchmarks/quality.py`'s held-out
windows (C. elegans IV, V, X; A. thaliana Chr4, Chr5: no bundled model saw them). Embeddings only:
the baselines are in quality.py's table. Not a test: it prints numbers.

With ``--project D`` the k-mer block is first projected onto D random directions (Gaussian, seeded):
what a model block of D channels could hold of it.

    .venv/bin/python benchmarks/kmer_concat.py [--k 6] [--weights 0.3,0.5,0.7] [--windows 2000] [--project 128]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

import genembed.evaluate as evaluation
from genembed.evaluate import EvalSettings, canonical_kmer_frequencies, evaluate
from genembed.genome import Genome
from genembed.models import ModelSpec
from genembed.plan import RunPlan
from genembed.tokenize import TokenizerSpec
from quality import REPO, held_out


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=1, keepdims=True), 1e-12)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(REPO / "resources/models/genembed-conv"))
    parser.add_argument("--k", type=int, default=6)
    parser.add_argument("--weights", default="0.3,0.5,0.7", help="the k-mer block's shares of the cosine")
    parser.add_argument("--windows", type=int, default=2000)
    parser.add_argument("--project", type=int, default=0, help="random projection of the k-mer block to this many dims")
    args = parser.parse_args()
    n_kmers = canonical_kmer_frequencies([b"ACGT" * 10], args.k).shape[1]
    projection = np.random.default_rng(0).standard_normal((n_kmers, args.project)) if args.project else None
    evaluation.BASELINES = {}  # the hybrid only (quality.py scores the baselines on the same windows)
    with tempfile.TemporaryDirectory() as tmp:
        fastas = held_out(Path(tmp))
        plan = RunPlan.make(ModelSpec(args.model), TokenizerSpec("kmer", 1), {"size": 500, "stride": 250})
        embed = plan.sequence_embedder()
        genomes = {name: Genome(Path(path)) for name, path in fastas.items()}
        for w in (float(x) for x in args.weights.split(",")):
            def hybrid(seqs, w=w):
                learned = unit(np.asarray(embed(seqs), dtype=np.float64))
                counts = canonical_kmer_frequencies(seqs, args.k).astype(np.float64)
                counts = counts - counts.mean(1, keepdims=True)
                counts = unit(counts @ projection if projection is not None else counts)
                return np.hstack([np.sqrt(1 - w) * learned, np.sqrt(w) * counts]).astype(np.float32)

            results, _ = evaluate(genomes, hybrid, 500, 250, EvalSettings(windows=args.windows), 0.1)
            shown = f" projected to {args.project} dims" if args.project else ""
            print(f"canonical {args.k}-mers{shown} at share {w}:", ", ".join(
                f"{r['measure']} {r['estimate']:.3f} ({r['low']:.3f}-{r['high']:.3f})" for r in results.iter_rows(named=True)),
                flush=True)


if __name__ == "__main__":
    main()
