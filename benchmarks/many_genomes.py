"""Many small genomes through the whole workflow, packed (``windows.pack_bp``, the default) against
today's layout without packing (``pack_bp: 0``: a prepare, windows, tokenize, embed, stitch and
add job per genome), in the same run, on the same genomes, with the bundled model.

Genomes: ``--genomes`` pieces of ``--bp`` from ``--fasta`` (default the bundled E. coli K-12) (each from a random offset,
with 2% of its bases changed, so that no two are alike). For each layout it prints the wall time
of ``snakemake --cores 2``, the jobs by rule, the stages that run once per run (describe_model,
train_index, merge_index, cluster_report), and the per-genome cost: (wall - once-per-run stages) /
genomes. Per-genome overhead = per-genome cost - the embedding compute of one genome, measured
here in-process with the model already loaded. Not a test: it prints numbers.

    .venv/bin/python benchmarks/many_genomes.py [--genomes 200] [--bp 100000]
"""

from __future__ import annotations

import argparse
import gzip
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml
from genembed.encode.embed import Embedder

REPO = Path(__file__).resolve().parents[1]
ONCE = ("describe_model", "train_index", "merge_index", "cluster_report")
sys.path.insert(0, str(REPO / "benchmarks"))
from stage_times import summarise  # noqa: E402


def make_genomes(folder: Path, n: int, bp: int, sources: list[Path], seed: int = 0) -> list[tuple[str, Path]]:
    parts = []
    for source in sources:  # every contig of every source, end to end
        with gzip.open(source, "rb") as fh:
            parts += [b"".join(r.split(b"\n")[1:]).upper() for r in fh.read().split(b">")[1:]]
    sequence = np.frombuffer(b"".join(parts), dtype=np.uint8)
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(n):
        start = int(rng.integers(0, len(sequence) - bp))
        seq = sequence[start : start + bp].copy()
        hit = rng.random(bp) < 0.02
        seq[hit] = np.frombuffer(b"ACGT", dtype=np.uint8)[rng.integers(0, 4, int(hit.sum()))]
        path = folder / f"g{i:04d}.fa"
        text = seq.tobytes()
        path.write_bytes(b">chr\n" + b"\n".join(text[j : j + 80] for j in range(0, bp, 80)) + b"\n")
        out.append((f"g{i:04d}", path))
    return out


def run_layout(folder: Path, genomes: list[tuple[str, Path]], pack_bp: int | None) -> dict:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg["model"]["path"] = str(REPO / "resources/models/genembed-conv")
    cfg["evaluate"]["enabled"] = False
    if pack_bp is not None:
        cfg["windows"]["pack_bp"] = pack_bp
    (folder / "config").mkdir(parents=True, exist_ok=True)
    (folder / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    (folder / "config/genomes.tsv").write_text("genome\tfasta\n" + "".join(f"{g}\t{p}\n" for g, p in genomes))
    t = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(folder),
                          "--cores", "2"], capture_output=True, text=True)
    wall = time.perf_counter() - t
    if res.returncode:
        raise SystemExit(res.stderr[-3000:])
    jobs: dict[str, int] = {}
    for rule in re.findall(r"^(?:rule|localrule|checkpoint|localcheckpoint) (\w+):", res.stdout + res.stderr, re.M):
        if rule != "all":
            jobs[rule] = jobs.get(rule, 0) + 1
    stages = summarise(folder / "benchmarks/logs")
    once = float(stages.filter(stages["rule"].is_in(ONCE))["total_s"].sum())
    windows = json.loads((folder / "results/index/manifest.json").read_text())["index"]["count"]
    return {"wall_s": wall, "jobs": jobs, "once_s": once, "windows": windows,
            "per_genome_s": (wall - once) / len(genomes)}


def compute_per_genome(genome: tuple[str, Path], folder: Path) -> float:
    """Seconds to embed one genome in-process, model loaded and warm (every stage: the job's own work)."""
    sys.path.insert(0, str(REPO / "src"))
    import torch

    from genembed.encode.embed import EmbedSettings
    from genembed.encode.models import ModelSpec
    from genembed.run.pipeline import embed_genome
    from genembed.encode.plan import RunPlan
    from genembed.encode.tokenize import TokenizerSpec

    torch.set_num_threads(2)
    plan = RunPlan.make(ModelSpec(str(REPO / "resources/models/genembed-conv")), TokenizerSpec("kmer", 1),
                        {"size": 500, "stride": 250}, EmbedSettings())
    embedder = Embedder.for_plan(plan)
    embed_genome(plan, genome[1], genome[0], folder / "warm", embedder)
    t = time.perf_counter()
    embed_genome(plan, genome[1], genome[0], folder / "timed", embedder)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--genomes", type=int, default=200)
    ap.add_argument("--bp", type=int, default=100_000)
    ap.add_argument("--fasta", type=Path, nargs="+", default=[REPO / "resources/example/ecoli_k12_mg1655.fna.gz"],
                    help="where the genomes' pieces come from (the held-out C. elegans and A. thaliana slices also work)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        genomes = make_genomes(tmp / "fasta", args.genomes, args.bp, args.fasta)
        compute = compute_per_genome(genomes[0], tmp / "compute")
        results = {}
        for name, pack_bp in (("packed (default)", None), ("one job per shard (pack_bp: 0)", 0)):
            results[name] = r = run_layout(tmp / name.split()[0], genomes, pack_bp)
            print(f"{name}: {r['wall_s']:.0f} s wall, {sum(r['jobs'].values())} jobs "
                  f"({', '.join(f'{k} {v}' for k, v in sorted(r['jobs'].items()))}), {r['windows']:,} windows;"
                  f" once-per-run stages {r['once_s']:.0f} s; per genome {r['per_genome_s']:.2f} s", flush=True)
        print(f"\n{args.genomes} genomes of {args.bp / 1000:.0f} kb; embedding one genome in-process (model loaded):"
              f" {compute:.2f} s")
        packed, sharded = results.values()
        over = {k: r["per_genome_s"] - compute for k, r in results.items()}
        for k in results:
            print(f"  {k}: per-genome overhead {over[k]:.2f} s")
        print(f"  per-genome overhead cut {over[list(results)[1]] / max(over[list(results)[0]], 1e-3):.1f}x;"
              f" per-genome cost cut {sharded['per_genome_s'] / packed['per_genome_s']:.1f}x;"
              f" wall {sharded['wall_s'] / packed['wall_s']:.1f}x;"
              f" jobs {sum(sharded['jobs'].values())} -> {sum(packed['jobs'].values())}")


if __name__ == "__main__":
    main()
