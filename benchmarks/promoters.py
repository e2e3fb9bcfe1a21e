"""Promoter prediction at 8-bp resolution on each strand (issue 29): the promoter report's supervised,
stranded model (`genembed.reports.stranded`: trained, scored on every bin and measured as the workflow's
promoter_model, promoter_scores and promoter_report jobs do it) against AT content and a
4-mer logistic regression on the same held-out examples, for the bundled E. coli K-12 (operon heads:
`--operon-gap`) and the C. elegans and A. thaliana slices (every gene start). Not a test: it prints numbers.

An example is one bin and strand; the last 20% of each contig is held out (examples straddling the border
dropped: no shared sequence), every tenth 10-kb block of the rest calibrates and sets the call threshold.
Intervals: 95% block bootstrap over 10-kb blocks. The window-level embedding probe is in the report
(`make run`), not here: it needs the run's embeddings.

    .venv/bin/python benchmarks/promoters.py [--genomes E.coli,C.elegans,A.thaliana] [--epochs 2] [--width 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from genembed.encode.device import native_bf16
from genembed.data.genome import Genome, prepare_fasta
from genembed.data.layout import GenomeInputs
from genembed.reports.inputs import ReportContext
from genembed.reports.promoters import PromoterSettings, held_out
from genembed.reports.stranded import score_genome, stranded_report, train_promoters
from genembed.reports.supervised import CnnSettings

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = REPO / "resources/example"
GENOMES = {"E.coli": (EXAMPLE / "ecoli_k12_mg1655.fna.gz", EXAMPLE / "ecoli_k12_mg1655.gff.gz", True),
           "C.elegans": (EXAMPLE / "C.elegans.fa.gz", EXAMPLE / "C.elegans.gff.gz", False),
           "A.thaliana": (EXAMPLE / "A.thaliana.fa.gz", EXAMPLE / "A.thaliana.gff.gz", False)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genomes", default=",".join(GENOMES))
    parser.add_argument("--operon-gap", type=int, default=50, help="E. coli: operon heads only (0: every gene)")
    parser.add_argument("--epochs", type=int, default=PromoterSettings.stranded_epochs)
    parser.add_argument("--width", type=int, default=CnnSettings.width)
    parser.add_argument("--max-positives", type=int, default=CnnSettings.max_positives)
    parser.add_argument("--precision", type=float, default=PromoterSettings.call_precision)
    parser.add_argument("--seed", type=int, default=0, help="the CNN's (and the bootstrap's) seed")
    parser.add_argument("--coding-share", default=str(CnnSettings.coding_share),
                        help="share of the training negatives from coding bins ('none': as the genome has them)")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.genomes.split(","):
            src, gff, bacterium = GENOMES[name]
            fasta = Path(tmp) / f"{name}.fa.gz"
            prepare_fasta(src, fasta)
            genome = GenomeInputs(name, fasta, gff)
            tests = {name: held_out(genome, PromoterSettings(split="region"))}
            fastas = {name: Genome(fasta)}
            out = Path(tmp) / name
            out.mkdir()
            started = time.monotonic()
            gap = args.operon_gap if bacterium else 0
            cnn = CnnSettings(epochs=args.epochs, width=args.width, max_positives=args.max_positives, seed=args.seed,
                              coding_share=None if args.coding_share == "none" else float(args.coding_share))
            trained = train_promoters([genome], tests, fastas, gap, args.precision, cnn, "cpu", native_bf16("cpu"))
            scores = score_genome(trained, name, fastas[name])
            measure = PromoterSettings(operon_gap=gap, recall=0.5, bootstrap=200, block_bp=10_000, seed=args.seed)
            r = stranded_report(ReportContext([genome], tests, fastas, measure, out), trained, scores, {})
            print(r.negatives)
            print(f"{name}: {r.examples['train']:,} training and {r.examples['test']:,} held-out examples"
                  f" ({r.metrics['test_positive_fraction'][0]:.1%} positive); {time.monotonic() - started:.0f} s in all;"
                  f" {r.counts[name]:,} calls at probability {r.threshold:.3f} (validation precision {args.precision:g}):"
                  f" at {r.tss_recall:.1%} recall of held-out starts, {r.tss_precision:.0%} of calls within 60 bp of one",
                  flush=True)
            for row in r.metrics.iter_rows(named=True):
                rows.append([name, row["model"]] + [f"{row[m]:.3f} ({row[m + '_lo']:.3f}-{row[m + '_hi']:.3f})"
                                                     for m in ("roc_auc", "pr_auc", "precision_at_recall")])
                print("  " + " | ".join(rows[-1][1:]), flush=True)
            for row in r.comparison.filter(r.comparison["metric"] != "precision_at_recall").iter_rows(named=True):
                print(f"  CNN - {row['baseline']} {row['metric']}: {row['difference']:+.3f} ({row['lo']:+.3f} to"
                      f" {row['hi']:+.3f}): {row['supervised_is']}", flush=True)
            fastas[name].close()
    print("\n| genome | method | ROC-AUC | PR-AUC | precision at recall 0.5 |\n| --- | --- | --- | --- | --- |")
    for r_ in rows:
        print("| " + " | ".join(r_) + " |")


if __name__ == "__main__":
    main()
