"""Capacity plan (docs/scaling.md): windows, tokens, compute, storage, index size and wall time for
a human genome (GRCh38, ``resources/plans/GRCh38.fai``) and for 1,000 bacterial genomes (each the
size of the bundled E. coli K-12), for the bundled model and for published DNA models.

Counts come from the planner itself (:func:`genembed.data.windows.window_count` over the real contig
lengths) and tokens per window from each model's tokenizer rule. Compute is forward FLOPs per token
of an encoder (projections, feed-forward and full attention over the window) times tokens. GPU time
is that divided by a stated bf16 peak times a stated utilisation (no GPU was measured here); CPU
time for the bundled model uses its throughput measured in this run. Storage per window is
measured on the bundled example's results when present. Not a test.

    .venv/bin/python benchmarks/capacity.py [--gpus 1 8 32] [--mfu 0.4]
"""

from __future__ import annotations

import argparse
import gzip
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "resources/models/genembed-dnabert-tiny"
#: bf16 dense tensor-core peaks from the vendors' data sheets (no sparsity), TFLOP/s.
GPUS = {"H100 SXM": 989.0, "A100": 312.0}
# per embedding job: Snakemake's start inside the job (7 s, measured through SLURM here), CUDA
# initialisation (5 s, assumed) and reading the weights (fp32 from local disk at 1 GB/s, assumed)
JOB_START_S, CUDA_INIT_S, READ_BYTES_PER_S = 7.0, 5.0, 1e9
# the index, measured by benchmarks/index_scale.py (2M vectors, d = 256, 2 cores): training on the
# 100,000-vector sample, adding vectors; both grow about linearly with the dimension
TRAIN_S, ADD_S_PER_MILLION = 107.0, 16.0
CPU_JOBS = 200  # the SLURM profile's `jobs` limit
# measured on the 2-core development machine (benchmarks/scale.py): seconds per Gbp, one process
PREPARE_S_PER_GBP, WINDOWS_TOKENS_S_PER_GBP = 116.8 / 1.0, 45.7 / 1.0


@dataclass(frozen=True)
class Model:
    name: str
    dim: int
    layers: int
    ffn: int
    gated: bool  # GLU feed-forward: three d x ffn matrices instead of two
    params_m: float
    tokens: str  # "kmer6" (non-overlapping 6-mers + leftovers) or "bpe" (about 0.25 tokens per bp)
    specials: int = 1

    def tokens_per_window(self, bp: int) -> int:
        if self.tokens == "kmer6":
            return bp // 6 + bp % 6 + self.specials
        return math.ceil(0.25 * bp) + self.specials

    def flops_per_token(self, seq: int) -> float:
        """Forward FLOPs per token: 2 per multiply-add in QKV and output projections (4 d^2), the
        feed-forward (2 or 3 d x ffn), and attention scores and mixing over ``seq`` tokens (2 seq d)."""
        matmul = 4 * self.dim**2 + (3 if self.gated else 2) * self.dim * self.ffn + 2 * seq * self.dim
        return 2.0 * self.layers * matmul


def bundled() -> Model:
    import json

    from safetensors import safe_open

    cfg = json.loads((MODEL / "config.json").read_text())
    with safe_open(str(MODEL / "model.safetensors"), "np") as f:
        params = sum(int(np.prod(f.get_slice(k).get_shape())) for k in f.keys())
    return Model("genembed-dnabert-tiny (bundled)", cfg["hidden_size"], cfg["num_hidden_layers"],
                 cfg["intermediate_size"], False, params / 1e6, "kmer6", 1)


PUBLISHED = [  # config.json of each hub model (sources in docs/scaling.md)
    Model("NT v2 50M", 512, 12, 2048, True, 56, "kmer6"),
    Model("NT v2 500M", 1024, 29, 4096, True, 498, "kmer6"),
    Model("DNABERT-2 117M", 768, 12, 3072, True, 117, "bpe", 2),
    Model("NT 2.5B (v1)", 2560, 32, 10240, False, 2548, "kmer6"),
]


def ecoli_bp() -> int:
    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        return sum(len(line.strip()) for line in fh if not line.startswith(b">"))


def measured_bytes_per_window() -> dict[str, float]:
    """Bytes per window of each stage's files in the example's results (make run), else estimates."""
    import polars as pl

    results = REPO / "results"
    windows = list(results.glob("windows/*/*.parquet"))
    if not windows:
        return {"windows": 8.0, "tokens": 356.0, "table": 5.6}
    n = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in windows)
    size = lambda pattern: sum(p.stat().st_size for p in results.glob(pattern)) / n  # noqa: E731
    return {"windows": size("windows/*/*.parquet"), "tokens": size("tokens/*/*.npy"),
            "table": (results / "index/windows.parquet").stat().st_size / n}


def cpu_windows_per_s() -> float:
    """The bundled model's CPU throughput here: 2,000 E. coli windows of 500 bp."""
    from genembed.encode.embed import EmbedSettings, Embedder, embed_tokens
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import TokenizerSpec, make_tokenizer

    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:])
    embedder = Embedder(ModelSpec(str(MODEL)), EmbedSettings())
    tok = make_tokenizer(TokenizerSpec("kmer"), embedder.tokenizer)
    rows = tok.encode_batch([seq[i * 500 : i * 500 + 500] for i in range(2000)])
    embed_tokens(embedder, rows[:200])  # warm-up
    start = time.perf_counter()
    embed_tokens(embedder, rows)
    return 2000 / (time.perf_counter() - start)


def index_bytes(n: int, dim: int) -> tuple[str, float]:
    """The index ``type: auto`` picks for ``n`` vectors and its bytes per vector (measured values:
    HNSW32 1,304 at d=256 scaled by d, PQ codes plus 8-byte ids)."""
    from genembed.search.index import IndexSettings

    factory = IndexSettings().factory_for(n, dim)
    if factory.startswith("HNSW"):
        return factory, 4 * dim + 280
    if "PQ" in factory:
        return factory, int(factory.rsplit("PQ", 1)[1]) + 8
    return factory, 4 * dim + 8


def main() -> None:
    from genembed.data.genome import read_fai
    from genembed.data.windows import WindowSpec, shard_count, window_count

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--gpus", type=int, nargs="+", default=[1, 8, 32])
    p.add_argument("--mfu", type=float, default=0.4, help="share of the bf16 peak a GPU sustains")
    p.add_argument("--size", type=int, default=500)
    p.add_argument("--stride", type=int, default=250)
    p.add_argument("--shard-size", type=int, default=50_000)
    args = p.parse_args()
    spec = WindowSpec(args.size, args.stride, shard_size=args.shard_size)
    human = read_fai(REPO / "resources/plans/GRCh38.fai")
    ecoli = ecoli_bp()
    sets = {
        "human (GRCh38, 195 contigs)": ([human], sum(n for _, n in human)),
        f"1,000 bacteria ({ecoli / 1e6:.2f} Mbp each)": ([[("chr", ecoli)]] * 1000, 1000 * ecoli),
    }
    per_window = measured_bytes_per_window()
    cpu_rate = cpu_windows_per_s()
    models = [bundled(), *PUBLISHED]
    gpu, peak = "H100 SXM", GPUS["H100 SXM"]
    print(f"# capacity plan: windows {spec.size} bp, stride {spec.stride}, shard_size {spec.shard_size:,};"
          f" {gpu} bf16 peak {peak:.0f} TFLOP/s at {args.mfu:.0%} utilisation; bundled model on this CPU:"
          f" {cpu_rate:,.0f} windows/s (2 cores, measured now)")
    for label, (genomes, bp) in sets.items():
        windows = sum(window_count(g, spec) for g in genomes)
        shards = sum(shard_count(g, spec) for g in genomes)
        # CPU stages (conservatively not overlapped with embedding): one prepare job per genome, then
        # windows and tokens one array task per shard, at most CPU_JOBS at once
        sizes = sorted((g_bp(g) for g in genomes), reverse=True)
        prepare_s = max(PREPARE_S_PER_GBP * sizes[0] / 1e9, PREPARE_S_PER_GBP * bp / 1e9 / CPU_JOBS)
        cpu_wall = prepare_s + WINDOWS_TOKENS_S_PER_GBP * bp / 1e9 / min(CPU_JOBS, shards)
        print(f"\n## {label}: {bp / 1e9:.2f} Gbp, {windows:,} windows, {shards:,} shards"
              f" ({3 * shards + 3 * len(genomes) + 5:,} jobs)\n")  # per genome: prepare, add, stitch
        print("| model | params | d | tokens | PFLOP | GPU-hours | tokens on disk | embeddings | index | "
              + " | ".join(f"wall, {n} GPU{'s' if n > 1 else ''}" for n in args.gpus) + " |")
        print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | " + " | ".join("---:" for _ in args.gpus) + " |")
        for m in models:
            tpw = m.tokens_per_window(spec.size)
            tokens = windows * tpw
            flops = tokens * m.flops_per_token(tpw)
            gpu_s = flops / (peak * 1e12 * args.mfu)
            emb = windows * (2 * m.dim + 8)
            factory, ib = index_bytes(windows, m.dim)
            index = windows * (ib + per_window["table"])
            rescore = windows * 2 * m.dim if "PQ" in factory else 0  # vectors.npy (index.rerank > 1)
            job_s = JOB_START_S + CUDA_INIT_S + 4 * m.params_m * 1e6 / READ_BYTES_PER_S
            index_s = (TRAIN_S + ADD_S_PER_MILLION * windows / 1e6) * m.dim / 256
            walls = [(cpu_wall + (gpu_s + shards * job_s) / n + index_s) / 3600 for n in args.gpus]
            print(f"| {m.name} | {m.params_m:,.1f}M | {m.dim} | {tokens / 1e9:.2f} G | {flops / 1e15:,.0f} | {gpu_s / 3600:,.1f} |"
                  f" {windows * (4 * tpw + 8) / 1e9:,.1f} GB | {emb / 1e9:,.1f} GB | {index / 1e9:,.2f} GB ({factory})"
                  + (f" + {rescore / 1e9:,.1f} GB vectors" if rescore else "") + " | "
                  + " | ".join(f"{w:,.1f} h" for w in walls) + " |")
        print(f"\nbundled model on CPU instead: {windows / cpu_rate / 3600:,.1f} core-pair-hours (2 cores);"
              f" window tables {windows * per_window['windows'] / 1e9:.2f} GB ({per_window['windows']:.1f} B per window"
              f" measured on the example; its tokens {per_window['tokens']:.0f} B per window)")


def g_bp(genome: list[tuple[str, int]]) -> int:
    return sum(n for _, n in genome)


if __name__ == "__main__":
    main()
