"""Embedding quality on genomes the default model was not trained on: `genembed evaluate` for the
previous default model (genembed-dnabert-tiny, masked LM over non-overlapping 6-mers) and the current
one (genembed-conv, contrastive), against 4-mer counts and GC content on the same windows, with the
issue's targets checked. Not a test: it prints numbers.

The held-out genomes are the bundled C. elegans and A. thaliana 1% slices (genembed-conv was
trained on E. coli K-12 only; see its model card).

    .venv/bin/python benchmarks/quality.py [--windows 2000] [--out results/quality] [--write-card]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import polars as pl

from genembed.evaluate import EvalSettings, evaluate_model
from genembed.genome import prepare_fasta
from genembed.models import ModelSpec
from genembed.plan import RunPlan
from genembed.tokenize import TokenizerSpec

REPO = Path(__file__).resolve().parents[1]
HELD_OUT = {"C.elegans": REPO / "resources/example/C.elegans.fa.gz", "A.thaliana": REPO / "resources/example/A.thaliana.fa.gz"}
MODELS = {
    "previous default (genembed-dnabert-tiny)": (REPO / "resources/models/genembed-dnabert-tiny", TokenizerSpec("kmer", 6)),
    "default (genembed-conv)": (REPO / "resources/models/genembed-conv", TokenizerSpec("kmer", 1)),
}
TARGETS = {"neighbour top-10": 0.90, "mutated 5% top-1": 0.95, "reverse complement top-1": 0.95}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--windows", type=int, default=2000, help="anchor windows (shared between the two genomes)")
    parser.add_argument("--out", default=str(REPO / "results/quality"), help="evaluate reports per model go here")
    parser.add_argument("--write-card", action="store_true", help="put the table in genembed-conv's model card")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    tables = {}
    with tempfile.TemporaryDirectory() as tmp:
        fastas = {}
        for name, src in HELD_OUT.items():
            fastas[name] = Path(tmp) / f"{name}.fa.gz"
            prepare_fasta(src, fastas[name])
        for label, (folder, tok) in MODELS.items():
            started = time.monotonic()
            plan = RunPlan.make(ModelSpec(str(folder)), tok, {"size": 500, "stride": 250})
            results, _ = evaluate_model(fastas, plan, Path(args.out) / folder.name, EvalSettings(windows=args.windows))
            tables[label] = results
            print(f"{label}: evaluated in {time.monotonic() - started:.0f} s")
    first = next(iter(tables.values()))
    text = lambda df: df.with_columns(pl.format("{} ({}-{})", *(pl.col(c).round(3) for c in ("estimate", "low", "high"))))  # noqa: E731
    wide = text(first.filter(pl.col("method") != "embeddings")).pivot(on="method", index="measure", values="estimate",
                                                                         maintain_order=True)
    for label, df in tables.items():
        col = text(df.filter(pl.col("method") == "embeddings")).select("measure", pl.col("estimate").alias(label))
        wide = wide.join(col, on="measure", how="left", maintain_order="left")
    print(f"\nHeld-out genomes: {', '.join(HELD_OUT)}; 500-bp windows every 250 bp; {args.windows} anchors; "
          "estimate (95% interval)")
    with pl.Config(tbl_rows=-1, tbl_cols=-1, tbl_width_chars=250, fmt_str_lengths=30, tbl_hide_dataframe_shape=True,
                   tbl_hide_column_data_types=True):
        print(wide)
    new = tables["default (genembed-conv)"]
    get = lambda df, m, method="embeddings": df.filter((pl.col("measure") == m) & (pl.col("method") == method))["estimate"][0]  # noqa: E731
    print("\nTargets for the default model on held-out genomes:")
    for measure, target in TARGETS.items():
        value = get(new, measure)
        print(f"  {measure}: {value:.3f} (target >= {target}; 4-mer {get(new, measure, '4-mer'):.3f})"
              f" {'MET' if value >= target else 'NOT MET'}")
    ari, ari4 = get(new, "genome ARI"), get(new, "genome ARI", "4-mer")
    print(f"  genome ARI: {ari:.3f} (target above 4-mer's {ari4:.3f}) {'MET' if ari > ari4 else 'NOT MET'}")
    if args.write_card:
        from genembed.tune import write_card

        header = "| measure | " + " | ".join(wide.columns[1:]) + " |"
        lines = [header, "|" + " --- |" * len(wide.columns)]
        lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in wide.iter_rows()]
        write_card(MODELS["default (genembed-conv)"][0], (
            f"\n## Evaluation (`genembed evaluate`, `benchmarks/quality.py`)\n"
            f"On genomes it was not trained on ({', '.join(HELD_OUT)} 1% slices), 500-bp windows every 250 bp, "
            f"{args.windows} anchor windows; estimate (95% interval):\n\n" + "\n".join(lines) + "\n"))


if __name__ == "__main__":
    main()
