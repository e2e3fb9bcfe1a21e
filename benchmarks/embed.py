"""Embedding throughput: the same model and the same windows run three ways in one process.

(a) naive: one window at a time through the model's tokenizer and model (fp32, ``no_grad``);
(b) the usual batched Hugging Face loop: batches of 16 windows, padded to the longest, fp32,
    ``no_grad``, masked mean over the attention mask (what common toolkits do);
(c) genembed's engine: its vectorised tokenizer, length-sorted token-budget batches,
    ``inference_mode``, SDPA, background batch preparation, and the precision ``auto`` picks
    (bf16 on CPUs with bf16 units and on GPUs).

For the default model (genembed-conv-6mer: the genembed-conv encoder, both strands per window, plus a 6-mer
block), its encoder alone (``--models encoder``: genembed-conv, the previous default), the first default (a 4-layer
BERT over 6-mers) and a BERT of about 25M parameters it prints windows/s, bp/s, achieved GFLOP/s
(useful FLOPs of the real tokens: the encoder's matrix products, convolutions and attention) and the
fraction of this machine's matrix-multiply peak, measured here with ``torch.matmul`` at the same
dtype. The bf16 : fp32 peak ratio bounds what lower precision alone can give over an fp32 loop
that already runs near the fp32 peak. Not a test: it prints numbers.

    .venv/bin/python benchmarks/embed.py [--windows 2048] [--naive-windows 96] [--device auto] [--dnallm DIR]

(d) is a whole ``genembed embed`` process over the same windows (start-up, FASTA to HDF5) beside
its inner loop (c), split into its fixed cost (a 64-window run: imports, model load) and the rate
past it. (e), with ``--dnallm DIR``, is the peer genembed replaces, DNALLM 1.2.1's
``DNAInference.get_embeddings``, on the same model and windows. DNALLM's declared dependencies pin
another torch and pull in jax, bitsandbytes and more; its import path needs only a few light
packages, installed beside it without touching this environment:

    .venv/bin/pip install --no-deps --target DIR dnallm datasets multiprocess pyarrow dill xxhash \
        fsspec pandas colorama peft accelerate evaluate altair captum
"""

from __future__ import annotations

import argparse
import gzip
import logging
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch

import genembed.encode.convnet  # noqa: F401  (registers genembed-conv with the Auto classes)
from genembed.encode.embed import EmbedSettings, Embedder, embed_tokens
from genembed.encode.models import ModelSpec, _quiet_transformers, load_tokenizer
from genembed.encode.tokenize import TokenizerSpec, make_tokenizer

REPO = Path(__file__).resolve().parents[1]
DEFAULT_MODEL = REPO / "resources/models/genembed-conv-6mer"
ENCODER_MODEL = REPO / "resources/models/genembed-conv"
PREVIOUS_MODEL = REPO / "resources/models/genembed-dnabert-tiny"
EXAMPLE = REPO / "resources/example/ecoli_k12_mg1655.fna.gz"


@dataclass
class Result:
    mode: str
    seconds: float
    windows: int
    bp: int
    flops: float
    dtype: str


def genome_windows(n: int, size: int, fastas: Sequence[Path] = (EXAMPLE,)) -> list[bytes]:
    """``n`` windows of ``size`` bp tiled along the contigs of these FASTAs (real sequence; the
    bundled E. coli by default), overlapping where the genomes are shorter than ``n`` windows."""
    contigs = []
    for fasta in fastas:
        with gzip.open(fasta, "rb") as fh:
            contigs += [b"".join(r.split(b"\n")[1:]).upper() for r in fh.read().split(b">")[1:]]
    starts = [(c, i) for c, seq in enumerate(contigs) for i in range(0, len(seq) - size + 1, size // 2)]
    picked = np.linspace(0, len(starts) - 1, n).astype(int)
    return [contigs[c][i : i + size] for c, i in (starts[j] for j in picked)]


def bert(folder: Path, hidden: int = 512, layers: int = 8) -> Path:
    """A randomly initialised BERT over 6-mers: hidden 512 and 8 layers is about 25M parameters,
    768 and 12 (BERT-base) about 110M."""
    from transformers import BertConfig, BertForMaskedLM

    from genembed.encode.tune import build_tokenizer

    torch.manual_seed(0)
    tok = build_tokenizer(6, 512)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=hidden // 64,
                     intermediate_size=4 * hidden, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def encoder_flops(cfg, lengths: np.ndarray) -> float:
    """Useful FLOPs of a BERT-style encoder on windows of these token counts: per layer the
    projections and feed-forward (2 x tokens x weights) and attention (4 x tokens^2 x hidden).
    genembed-conv: per token the stem, each block's depthwise convolution and feed-forward, twice
    (both strands) when it is reverse-complement invariant."""
    h, i, layers = cfg.hidden_size, cfg.intermediate_size, cfg.num_hidden_layers
    if cfg.model_type == "genembed-conv":
        per_token = 2 * cfg.embedding_size * h * cfg.stem_kernel + layers * (2 * h * cfg.kernel_size + 4 * h * i)
        return float(per_token * lengths.sum() * (2 if cfg.rc_invariant else 1))
    weights = 4 * h * h + 2 * h * i
    t = lengths.astype(np.float64)
    return float(layers * (2 * weights * t.sum() + 4 * h * (t**2).sum()))


def matmul_peak(dtype: torch.dtype, device: str, seconds: float = 1.5) -> float:
    """Best GFLOP/s of ``torch.matmul`` at this dtype over a few shapes (square and encoder-like); the
    shapes shrink where one product would take more than a tenth of ``seconds`` (bf16 emulated on a
    CPU without bf16 units runs at well under 1 GFLOP/s: a 2048-square product takes a minute)."""
    a = torch.randn(256, 256, dtype=dtype, device=device)
    a @ a
    _sync(device)
    start = time.perf_counter()
    a @ a
    _sync(device)
    rate = 2 * 256**3 / max(time.perf_counter() - start, 1e-9)  # FLOP/s, roughly
    shrink = 1
    while 2 * 2048**3 / shrink**3 / rate > seconds / 10 and shrink < 8:
        shrink *= 2
    best = 0.0
    for m, k, n in ((2048, 2048, 2048), (4096, 512, 2048), (4096, 2048, 512)):
        m, k, n = m // shrink, k // shrink, n // shrink
        a = torch.randn(m, k, dtype=dtype, device=device)
        b = torch.randn(k, n, dtype=dtype, device=device)
        for _ in range(3):
            a @ b
        _sync(device)
        start, count = time.perf_counter(), 0
        while time.perf_counter() - start < seconds / 3:
            a @ b
            count += 1
        _sync(device)
        best = max(best, 2 * m * k * n * count / (time.perf_counter() - start) / 1e9)
    return best


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def hf_model(folder: Path, device: str):
    from transformers import AutoModel, AutoTokenizer

    return AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).to(device).eval()


def naive(folder: Path, seqs: list[bytes], device: str) -> tuple[float, np.ndarray]:
    tok, model = hf_model(folder, device)
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for s in seqs:
            enc = tok(s.decode(), return_tensors="pt").to(device)
            out.append(model(**enc).last_hidden_state.mean(1).float().cpu().numpy()[0])
    _sync(device)
    return time.perf_counter() - start, np.stack(out)


def hf_loop(folder: Path, seqs: list[bytes], device: str, batch: int = 16) -> tuple[float, np.ndarray]:
    tok, model = hf_model(folder, device)
    out = []
    start = time.perf_counter()
    with torch.no_grad():
        for i in range(0, len(seqs), batch):
            enc = tok([s.decode() for s in seqs[i : i + batch]], return_tensors="pt", padding=True).to(device)
            hidden = model(**enc).last_hidden_state
            mask = enc["attention_mask"][..., None].float()
            out.append(((hidden * mask).sum(1) / mask.sum(1)).cpu().numpy())
    _sync(device)
    return time.perf_counter() - start, np.concatenate(out)


def engine(folder: Path, seqs: list[bytes], device: str) -> tuple[float, np.ndarray, str]:
    spec = ModelSpec(str(folder))
    embedder = Embedder(spec, EmbedSettings(device=device))
    k = 1 if embedder.model.config.model_type == "genembed-conv" else 6  # the default config's tokenizer for each
    tokenizer = make_tokenizer(TokenizerSpec("kmer", k, False), load_tokenizer(folder, spec))
    embed_tokens(embedder, tokenizer.encode_batch(seqs[:64]))  # warm-up, as for the others below
    start = time.perf_counter()
    vectors = embed_tokens(embedder, tokenizer.encode_batch(seqs))
    _sync(device)
    return time.perf_counter() - start, vectors.astype(np.float32), embedder.precision


STARTUP_WINDOWS = 64  # a `genembed embed` this small is all fixed cost


def end_to_end(folder: Path, seqs: list[bytes], device: str) -> float:
    """Seconds of a whole `genembed embed` process (start-up, model load, FASTA preparation, windows,
    tokens, embedding, HDF5) over the same windows, each its own contig."""
    import subprocess
    import sys

    k = 1 if folder in (DEFAULT_MODEL, ENCODER_MODEL) else 6
    with tempfile.TemporaryDirectory() as tmp:
        fasta = Path(tmp) / "windows.fa"
        fasta.write_bytes(b"".join(b">w%d\n%s\n" % (i, s) for i, s in enumerate(seqs)))
        size = str(len(seqs[0]))
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genembed.run.cli", "embed", "--fasta", str(fasta), "--genome", "g", "--out",
                        str(Path(tmp) / "out"), "--model", str(folder), "--tokenizer", "kmer", "--k", str(k),
                        "--window", size, "--stride", size, "--device", device], check=True, capture_output=True)
        return time.perf_counter() - start


DNALLM_SCRIPT = """
import json, sys, time
import torch
torch.set_num_threads(int(sys.argv[3]))
import genembed.encode.convnet  # registers genembed-conv with the Auto classes
from transformers import AutoModel, AutoTokenizer
from dnallm.configuration.configs import InferenceConfig, TaskConfig
from dnallm.inference.inference import DNAInference
import datasets.arrow_dataset, datasets.fingerprint  # datasets 5.1 cannot hash pyarrow >= 24 tables (MonthDayNano):
datasets.arrow_dataset.generate_fingerprint = lambda ds: datasets.fingerprint.generate_random_fingerprint()  # skip it
seqs = open(sys.argv[2]).read().split()
model, tok = AutoModel.from_pretrained(sys.argv[1]).eval(), AutoTokenizer.from_pretrained(sys.argv[1])
config = {"task": TaskConfig(), "inference": InferenceConfig(batch_size=16, max_length=1024, device=sys.argv[4],
                                                              num_workers=0)}
engine = DNAInference(model, tok, config)
engine.get_embeddings(seqs[:32], do_reduce=True, force=True)  # warm-up, as for the others
start = time.perf_counter()
out = engine.get_embeddings(seqs, do_reduce=True, reduce_strategy="mean", force=True)
print(json.dumps({"seconds": time.perf_counter() - start, "n": len(seqs)}))
"""


def dnallm(folder: Path, seqs: list[bytes], device: str, packages: Path) -> float:
    """Seconds of DNALLM's ``DNAInference.get_embeddings`` (mean over tokens) on the same windows and
    model, in a process of its own with DNALLM imported from ``packages`` (``pip install --no-deps
    --target PACKAGES dnallm`` and the light packages its import path needs: see the module doc)."""
    import json
    import os
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as tmp:
        listing = Path(tmp) / "seqs.txt"
        listing.write_text("\n".join(s.decode() for s in seqs) + "\n")
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), str(REPO / "src")])}
        res = subprocess.run([sys.executable, "-c", DNALLM_SCRIPT, str(folder), str(listing),
                              str(torch.get_num_threads()), device], capture_output=True, text=True, env=env)
        if res.returncode:
            raise SystemExit(f"DNALLM run failed: {res.stderr.strip().splitlines()[-1]}")
        return json.loads(res.stdout.strip().splitlines()[-1])["seconds"]


def cosine(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))


def bench_model(name: str, folder: Path, seqs: list[bytes], n_naive: int, device: str,
                peaks: dict[str, float], dnallm_packages: Path | None = None, process: bool = True) -> list[Result]:
    from transformers import AutoConfig, AutoTokenizer

    cfg = AutoConfig.from_pretrained(folder)
    lengths = np.array([len(x) for x in AutoTokenizer.from_pretrained(folder)([s.decode() for s in seqs])["input_ids"]])
    params = sum(p.numel() for p in hf_model(folder, "cpu")[1].parameters())
    bp = sum(len(s) for s in seqs)
    print(f"\n## {name}: {params / 1e6:.1f}M parameters, hidden {cfg.hidden_size}, {cfg.num_hidden_layers} layers;"
          f" {len(seqs)} windows of {len(seqs[0])} bp, {lengths.mean():.0f} tokens each", flush=True)
    hf_loop(folder, seqs[:32], device)  # warm-up (thread pools, allocator)
    results = []
    t, ref = hf_loop(folder, seqs, device)
    results.append(Result("(b) HF loop, batch 16, fp32", t, len(seqs), bp, encoder_flops(cfg, lengths), "fp32"))
    t, vec, precision = engine(folder, seqs, device)
    results.append(Result(f"(c) genembed engine, {precision}", t, len(seqs), bp, encoder_flops(cfg, lengths),
                          "bf16" if precision == "bfloat16" else "fp32" if precision == "float32" else "fp16"))
    t, _ = naive(folder, seqs[:n_naive], device)
    results.append(Result("(a) naive, one window at a time, fp32", t, n_naive, sum(len(s) for s in seqs[:n_naive]),
                          encoder_flops(cfg, lengths[:n_naive]), "fp32"))
    cos = cosine(vec, ref)
    print(f"engine vs HF loop: cosine per window min {cos.min():.5f}, mean {cos.mean():.5f}")
    print(f"| mode | windows/s | bp/s | GFLOP/s | % of {device} matmul peak at its dtype | % of bf16 peak |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in results:
        gflops = r.flops / r.seconds / 1e9
        print(f"| {r.mode} | {r.windows / r.seconds:,.1f} | {r.bp / r.seconds:,.0f} | {gflops:,.1f} |"
              f" {100 * gflops / peaks[r.dtype]:.0f}% | {100 * gflops / peaks['bf16']:.0f}% |")
    rate = {r.mode[:3]: r.windows / r.seconds for r in results}
    if not process:
        return results
    seconds = end_to_end(folder, seqs, device)
    fixed = end_to_end(folder, seqs[:STARTUP_WINDOWS], device)
    inner = len(seqs) / engine(folder, seqs, device)[0]  # (c) again, right after (d): this machine's speed drifts
    inner = (inner + rate["(c)"]) / 2
    whole, after = len(seqs) / seconds, (len(seqs) - STARTUP_WINDOWS) / max(seconds - fixed, 1e-9)
    print(f"(d) `genembed embed`, the whole process, same windows: {whole:,.1f} windows/s = {100 * whole / inner:.0f}%"
          f" of the engine's inner loop (c) ({inner:,.1f} windows/s, the mean of a run before and after (d));"
          f" its fixed cost (start-up, model load, a {STARTUP_WINDOWS}-window run) {fixed:.1f} s; past it"
          f" {after:,.1f} windows/s = {100 * after / inner:.0f}% of (c)")
    if dnallm_packages:
        peer = len(seqs) / dnallm(folder, seqs, device, dnallm_packages)
        print(f"(e) DNALLM DNAInference.get_embeddings (mean), same model and windows: {peer:,.1f} windows/s;"
              f" `genembed embed` (d) = {whole / peer:.2f}x, engine (c) = {rate['(c)'] / peer:.2f}x")
    ceiling = peaks["bf16"] / (results[0].flops / results[0].seconds / 1e9)
    print(f"speed-up: (c)/(b) = {rate['(c)'] / rate['(b)']:.2f}x, (c)/(a) = {rate['(c)'] / rate['(a)']:.2f}x;"
          f" ceiling for (c)/(b) at 100% of the bf16 peak: {ceiling:.2f}x")
    return results


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--windows", type=int, default=2048)
    p.add_argument("--naive-windows", type=int, default=96)
    p.add_argument("--window-bp", type=int, default=500, help="the default config's window size")
    p.add_argument("--device", default="auto")
    p.add_argument("--models", default="default,encoder,previous,bert-25m", help="also: bert-110m")
    p.add_argument("--fasta", type=Path, nargs="+", default=[EXAMPLE],
                   help="genomes to take the windows from (default: the bundled E. coli, which genembed-conv was"
                        " trained on; resources/example/C.elegans.fa.gz and A.thaliana.fa.gz were held out)")
    p.add_argument("--no-process", action="store_true", help="skip (d), the whole `genembed embed` process (a smoke run)")
    p.add_argument("--peak-seconds", type=float, default=1.5, help="time spent measuring each matmul peak")
    p.add_argument("--dnallm", type=Path, help="a folder DNALLM was installed into (see the module doc): adds row (e)")
    args = p.parse_args()
    logging.basicConfig(level=logging.WARNING)
    _quiet_transformers()
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    name = torch.cuda.get_device_name() if device.startswith("cuda") else f"CPU, {torch.get_num_threads()} threads"
    print(f"# embedding benchmark on {name}; torch {torch.__version__}")
    peaks = {"fp32": matmul_peak(torch.float32, device, args.peak_seconds),
             "bf16": matmul_peak(torch.bfloat16, device, args.peak_seconds)}
    if device.startswith("cuda"):
        peaks["fp16"] = matmul_peak(torch.float16, device, args.peak_seconds)
    print("matmul peak measured now: " + ", ".join(f"{k} {v:,.0f} GFLOP/s" for k, v in peaks.items())
          + f"; bf16 : fp32 = {peaks['bf16'] / peaks['fp32']:.2f}")
    seqs = genome_windows(args.windows, args.window_bp, args.fasta)
    with tempfile.TemporaryDirectory() as tmp:
        builders = {"default": lambda: DEFAULT_MODEL, "encoder": lambda: ENCODER_MODEL, "previous": lambda: PREVIOUS_MODEL,
                    "bert-25m": lambda: bert(Path(tmp) / "bert-25m"),
                    "bert-110m": lambda: bert(Path(tmp) / "bert-110m", 768, 12)}
        folders = {m: builders[m]() for m in args.models.split(",")}
        for model in args.models.split(","):
            bench_model(model, folders[model], seqs, args.naive_windows, device, peaks, args.dnallm, not args.no_process)


if __name__ == "__main__":
    main()
