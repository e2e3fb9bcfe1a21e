"""The first-GPU check: every CUDA path a CPU cannot exercise, in one run of a few minutes, written
to one JSON file. On a machine without a usable CUDA device each part is skipped with the reason
(so it runs, and is tested, everywhere). Run it through ``benchmarks/gpu_check.sh``.

Parts:
- ``environment``: torch, CUDA, the device, native bf16, FAISS and its GPUs;
- ``precision``: per model family of the test zoo (an FFT-convolution model and DNABERT-2's Triton
  kernel included) and the bundled model, the cosine between fp32 and bf16/fp16 embeddings of the
  same windows on the GPU, none NaN or infinite, and the precision each actually ran in (a model
  that fails in bf16/fp16 runs in fp32);
- ``default_model_grid``: the bundled model on the GPU in fp32/bf16/fp16 x pooling x strands
  against the CPU in fp32 (cosine >= 0.999 wanted);
- ``ordinal``: ``cuda:N`` past the visible devices is refused in one line, naming CUDA_VISIBLE_DEVICES;
- ``oom_backoff``: a 110M-parameter BERT with an oversized token budget under a memory cap: the
  embedder must halve its budget and finish, with the same vectors as without the cap;
- ``pinned_memory``: batches are pinned before the copy to the device;
- ``repeat``: two identical GPU runs, bitwise equal or how far apart;
- ``query_vs_stored``: query vectors made on the GPU against the float16 vectors a CPU run stores;
- ``embed_benchmark``: ``benchmarks/embed.py --device cuda`` for the bundled model and the 110M BERT;
- ``faiss_gpu``: IVF and OPQ+IVF-PQ training on the GPU (d = 256 and 896) against the CPU, the
  trained index written, read back on the CPU and searched (recall@10 against exact search).
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any, Callable

REPO = Path(__file__).resolve().parents[1]
BUNDLED = REPO / "resources/models/genembed-conv-6mer"  # the default config's model (the encoder plus a 6-mer block)
SMOKE = False  # --cpu-smoke: the same code on the CPU, in miniature (what the test suite runs)
sys.path[:0] = [str(REPO / "tests"), str(REPO / "benchmarks")]  # the model zoo, benchmarks/embed.py


def device() -> str:
    return "cpu" if SMOKE else "cuda"


def cuda_reason() -> str | None:
    """Why the CUDA parts cannot run here (None when they can)."""
    import torch

    if SMOKE:
        return None
    if torch.version.cuda is None:
        return f"torch {torch.__version__} is a CPU-only build"
    if not torch.cuda.is_available():
        return "no CUDA device is visible (driver, CUDA_VISIBLE_DEVICES)"
    return None


def environment() -> dict[str, Any]:
    import faiss
    import torch

    out: dict[str, Any] = {"python": platform.python_version(), "torch": torch.__version__,
                           "torch_cuda": torch.version.cuda, "faiss": faiss.__version__,
                           "faiss_gpus": faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0}
    if cuda_reason() is None and not SMOKE:
        out.update(device=torch.cuda.get_device_name(0), capability=list(torch.cuda.get_device_capability(0)),
                   memory_gb=round(torch.cuda.get_device_properties(0).total_memory / 1e9, 1),
                   bf16_native=torch.cuda.is_bf16_supported(including_emulation=False))
    return out


def windows(n: int = 64, size: int = 500) -> list[bytes]:
    import gzip

    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:]).upper()
    return [seq[i * 9973 : i * 9973 + size] for i in range(n)]


def zoo(folder: Path) -> dict[str, tuple[Path, Any, bool]]:
    """Model folders of every family the tests build, with their tokenizer spec and remote-code flag."""
    import model_zoo

    from genembed.encode.tokenize import TokenizerSpec

    seq = windows(8, 2000)[0]
    return {
        "genembed-conv-6mer (bundled)": (BUNDLED, TokenizerSpec("kmer", 1), False),
        "dnabert": (model_zoo.dnabert(folder / "dnabert"), TokenizerSpec("kmer", 6, True), False),
        "nucleotide-transformer-v1": (model_zoo.nucleotide_transformer_v1(folder / "nt1"), TokenizerSpec("kmer", 6), False),
        "bpe-bert": (model_zoo.bpe_bert(folder / "bpe", seq), TokenizerSpec("hf"), False),
        "nt-v2-like (custom code)": (model_zoo.masked_lm_custom_code(folder / "nt2"), TokenizerSpec("kmer", 6), True),
        "dnabert2-like (custom code)": (model_zoo.dnabert2_like(folder / "db2", seq), TokenizerSpec("hf"), True),
        "hyena-like (custom code)": (model_zoo.hyena_like(folder / "hyena"), TokenizerSpec("hf"), True),
        "hyena-like, FFT convolutions": (model_zoo.hyena_like(folder / "hyena-fft", fft=True), TokenizerSpec("hf"), True),
        "dnabert2-like, Triton kernel": (model_zoo.dnabert2_with_triton_kernel(folder / "db2-triton", seq),
                                         TokenizerSpec("hf"), True),
    }


def precision(tmp: Path) -> dict[str, Any]:
    import numpy as np

    from genembed.encode.embed import EmbedSettings, Embedder
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import make_tokenizer

    out = {}
    seqs = windows()
    for family, (folder, tok_spec, remote) in zoo(tmp).items():
        row: dict[str, Any] = {}
        try:
            vectors = {}
            reduced = ("bf16",) if SMOKE else ("bf16", "fp16")  # fp16 is a GPU format
            for p in ("fp32", *reduced):
                emb = Embedder(ModelSpec(str(folder), trust_remote_code=remote), EmbedSettings(precision=p, device=device()))
                rows = make_tokenizer(tok_spec, emb.tokenizer).encode_batch(seqs)
                vectors[p] = emb.embed_rows(rows)
                row[f"{p}_finite"] = bool(np.isfinite(vectors[p]).all())
                row[f"{p}_ran_in"] = emb.precision
            for p in reduced:
                a, b = vectors["fp32"], vectors[p]
                cos = (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)
                row[f"{p}_min_cosine"] = round(float(cos.min()), 5)
        except Exception as exc:  # a family that fails is a finding, not the end of the check
            row["error"] = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"
        out[family] = row
    return out


def cosines(a, b):
    import numpy as np

    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return (a * b).sum(1) / np.maximum(np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1), 1e-12)


def default_model_grid(tmp: Path) -> dict[str, Any]:
    import numpy as np

    from genembed.encode.embed import EmbedSettings, Embedder, embed_tokens
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import TokenizerSpec, make_tokenizer, reverse_complement

    spec = ModelSpec(str(BUNDLED))
    seqs = windows(32 if SMOKE else 256)
    out = {}
    for strands in ("forward", "average"):
        for pooling in ("mean", "max"):
            cpu = Embedder(spec, EmbedSettings(pooling=pooling, strands=strands, precision="fp32", device="cpu"))
            tok = make_tokenizer(TokenizerSpec("kmer", 1), cpu.tokenizer)
            both = seqs + ([reverse_complement(s) for s in seqs] if strands == "average" else [])
            rows = tok.encode_batch(both)
            want = embed_tokens(cpu, rows)
            for p in ("fp32", "bf16") if SMOKE else ("fp32", "bf16", "fp16"):
                emb = Embedder(spec, EmbedSettings(pooling=pooling, strands=strands, precision=p, device=device()))
                got = embed_tokens(emb, rows)
                c = cosines(want, got)
                out[f"{strands}/{pooling}/{p}"] = {"min_cosine": round(float(c.min()), 5), "ran_in": emb.precision,
                                                   "finite": bool(np.isfinite(got.astype(np.float32)).all())}
    out["all_at_least_0.999"] = all(v["min_cosine"] >= 0.999 and v["finite"] for v in out.values())
    return out


def ordinal(tmp: Path) -> dict[str, Any]:
    import torch

    from genembed.encode.device import pick_device
    from genembed.errors import GenembedError

    count = torch.cuda.device_count() if not SMOKE else 0
    try:
        pick_device(f"cuda:{count}")
        return {"visible": count, "refused": False}
    except GenembedError as exc:
        return {"visible": count, "refused": True, "message": str(exc)}


def repeat(tmp: Path) -> dict[str, Any]:
    import numpy as np

    from genembed.encode.embed import EmbedSettings, Embedder
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import TokenizerSpec, make_tokenizer

    emb = Embedder(ModelSpec(str(BUNDLED)), EmbedSettings(device=device()))
    rows = make_tokenizer(TokenizerSpec("kmer", 1), emb.tokenizer).encode_batch(windows(32 if SMOKE else 512))
    a, b = emb.embed_rows(rows), emb.embed_rows(rows)
    return {"precision": emb.precision, "bitwise_equal": bool(np.array_equal(a, b)),
            "max_abs_difference": float(np.abs(a - b).max())}


def query_vs_stored(tmp: Path) -> dict[str, Any]:
    from genembed.encode.embed import EmbedSettings
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan
    from genembed.encode.scan import sequence_embedder
    from genembed.encode.tokenize import TokenizerSpec

    seqs = windows(32 if SMOKE else 256)
    plan = RunPlan.make(ModelSpec(str(BUNDLED)), TokenizerSpec("kmer", 1),
                        {"size": 500, "stride": 250}, EmbedSettings(precision="fp32", device="cpu"))
    stored = sequence_embedder(plan)(seqs)  # float16, as a CPU run stores them
    on_gpu = RunPlan.make(ModelSpec(str(BUNDLED)), TokenizerSpec("kmer", 1),
                          {"size": 500, "stride": 250}, EmbedSettings(device=device()))
    query = sequence_embedder(on_gpu)(seqs)
    c = cosines(stored, query)
    return {"query_precision": on_gpu.embed.precision, "min_cosine": round(float(c.min()), 5),
            "mean_cosine": round(float(c.mean()), 6)}


def shared_pass(tmp: Path) -> dict[str, Any]:
    """The default model's pass along the sequence (genembed.encode.scan, what a run's shards and the promoter
    track use) against embedding each window, on the GPU: vectors and windows/s."""
    import gzip

    import numpy as np

    from genembed.encode.embed import EmbedSettings, Embedder, embed_sequences
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan
    from genembed.encode.scan import Scanner
    from genembed.encode.tokenize import TokenizerSpec, plan_tokenizer

    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:]).upper()[: 20_000 if SMOKE else 1_000_000]
    plan = RunPlan.make(ModelSpec(str(BUNDLED)), TokenizerSpec("kmer", 1),
                        {"size": 500, "stride": 250}, EmbedSettings(device=device(), token_budget=16384 if SMOKE else 262144))
    embedder = Embedder.for_plan(plan)
    tokenizer = plan_tokenizer(plan, embedder.tokenizer)
    scan = Scanner(embedder, tokenizer, plan.max_tokens)
    starts = np.arange(0, len(seq) - 500 + 1, 250)
    out: dict[str, Any] = {"precision": embedder.precision, "windows": len(starts)}
    for name, run_it in (("one_pass", lambda: scan(seq, starts, 500)),
                         ("each_window", lambda: embed_sequences(embedder, tokenizer, [seq[s : s + 500] for s in starts],
                                                                 plan.max_tokens))):
        run_it()  # warm-up
        begin = time.perf_counter()
        out[name] = run_it()
        out[f"{name}_windows_per_s"] = round(len(starts) / (time.perf_counter() - begin), 1)
    a, b = out.pop("one_pass"), out.pop("each_window")
    out.update(max_abs_difference=float(np.abs(a - b).max()), min_cosine=round(float(cosines(a, b).min()), 6))
    return out


def oom_backoff(tmp: Path) -> dict[str, Any]:
    import numpy as np
    import torch

    from genembed.encode.embed import EmbedSettings, Embedder
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import TokenizerSpec, make_tokenizer

    if SMOKE:
        raise Skip("a GPU memory cap is what provokes the out-of-memory back-off")
    from embed import bert  # benchmarks/embed.py

    folder = bert(tmp / "bert-110m", 768, 12)
    seqs = windows(512, 500)
    free = Embedder(ModelSpec(str(folder)), EmbedSettings(precision="fp32", device="cuda", token_budget=8192))
    rows = make_tokenizer(TokenizerSpec("kmer", 6), free.tokenizer).encode_batch(seqs)
    want = free.embed_rows(rows)
    del free
    torch.cuda.empty_cache()
    total = torch.cuda.get_device_properties(0).total_memory
    cap = 2.5e9  # bytes: the weights fit, a 500,000-token batch does not
    torch.cuda.set_per_process_memory_fraction(cap / total)
    try:
        capped = Embedder(ModelSpec(str(folder)), EmbedSettings(precision="fp32", device="cuda", token_budget=500_000))
        got = capped.embed_rows(rows)
        budget = capped.budget
    finally:
        torch.cuda.set_per_process_memory_fraction(1.0)
    cos = (want * got).sum(1) / np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    return {"cap_gb": cap / 1e9, "budget_start": 500_000, "budget_after_backoff": budget,
            "backed_off": budget < 500_000, "min_cosine_vs_uncapped": round(float(cos.min()), 6)}


def pinned_memory(tmp: Path) -> dict[str, Any]:
    import numpy as np

    from genembed.encode.embed import EmbedSettings, Embedder
    from genembed.encode.models import ModelSpec

    if SMOKE:
        raise Skip("pinned memory is for copies to a GPU")
    emb = Embedder(ModelSpec(str(BUNDLED)), EmbedSettings(device="cuda"))
    rows = [np.arange(5, 105) % 4 + 5]
    _, ids, lens = emb._padded(rows, np.array([100]), np.array([0]))
    return {"ids_pinned": bool(ids.is_pinned()), "lengths_pinned": bool(lens.is_pinned())}


def embed_benchmark(tmp: Path) -> dict[str, Any]:
    size = ["--models", "default", "--windows", "32", "--naive-windows", "4", "--no-process", "--peak-seconds", "0.3"] if SMOKE else \
        ["--models", "default,bert-110m", "--windows", "8192", "--naive-windows", "64"]
    res = subprocess.run([sys.executable, str(REPO / "benchmarks/embed.py"), "--device", device(), *size],
                         capture_output=True, text=True, timeout=240)
    if res.returncode != 0:
        raise RuntimeError(res.stderr.strip().splitlines()[-1] if res.stderr.strip() else "embed.py failed")
    return {"returncode": res.returncode, "output": res.stdout.splitlines(), "stderr_tail": res.stderr[-1500:]}


def faiss_gpu(tmp: Path) -> dict[str, Any]:
    import logging

    import faiss
    import numpy as np

    from genembed.search.index import _to_gpu, read_index_file, train_on_gpu_or_cpu, write_index_file

    gpu = hasattr(faiss, "index_cpu_to_all_gpus") and faiss.get_num_gpus() > 0
    if not gpu and not SMOKE:
        raise Skip("this FAISS has no GPU support (faiss-cpu; install faiss-gpu for index.gpu)")
    n, lists = (3_000, 16) if SMOKE else (100_000, 1024)
    rng = np.random.default_rng(0)
    out = {}
    for d in (256, 896):
        x = rng.standard_normal((n, d)).astype(np.float32)
        faiss.normalize_L2(x)
        queries = x[:200]
        exact = faiss.IndexFlatIP(d)
        exact.add(x)
        truth = exact.search(queries, 10)[1]
        m = 8 if SMOKE else 32 if d == 256 else 56  # PQ sub-quantizers (the smoke run keeps the OPQ training short)
        for factory in (f"IVF{lists},Flat", f"OPQ{m},IVF{lists},PQ{m}"):
            if SMOKE and d == 896 and "PQ" in factory:
                continue  # OPQ's 896 x 896 rotation takes most of a minute on a CPU; the GPU run does it
            row: dict[str, Any] = {}
            # the CPU trains IVF,Flat for the speed-up; OPQ+PQ only where there is no GPU (minutes on a CPU at d = 896)
            for where in ("gpu",) if gpu and "PQ" in factory else ("cpu", "gpu") if gpu else ("cpu",):
                index = faiss.index_factory(d, factory, faiss.METRIC_INNER_PRODUCT)
                logs: list[str] = []
                handler = logging.Handler()
                handler.emit = lambda record: logs.append(record.getMessage())
                logging.getLogger("genembed.search.index").addHandler(handler)
                start = time.perf_counter()
                try:
                    trained = train_on_gpu_or_cpu(index, x, _to_gpu if where == "gpu" else (lambda _: None))
                finally:
                    logging.getLogger("genembed.search.index").removeHandler(handler)
                row[f"{where}_train_seconds"] = round(time.perf_counter() - start, 2)
                if where == "gpu":
                    row["gpu_fell_back"] = [m for m in logs if "failed" in m]
                path = tmp / f"{d}-{where}.faiss"
                write_index_file(trained, path)
                back = read_index_file(path)  # read back on the CPU
                back.add(x)
                faiss.extract_index_ivf(back).nprobe = 16
                found = back.search(queries, 10)[1]
                row[f"{where}_recall_at_10"] = round(float(np.mean([len(set(a) & set(b)) / 10
                                                                     for a, b in zip(found, truth)])), 3)
            out[f"d{d} {factory}"] = row
    return out


class Skip(Exception):
    """A part that cannot run here, with the reason."""


def run(name: str, part: Callable[[Path], dict[str, Any]], tmp: Path, needs_cuda: bool = True) -> dict[str, Any]:
    reason = cuda_reason() if needs_cuda else None
    if reason is not None:
        return {"skipped": reason}
    start = time.perf_counter()
    try:
        result = part(tmp)
    except Skip as exc:
        return {"skipped": str(exc)}
    except Exception as exc:
        result = {"error": f"{type(exc).__name__}: {exc}".splitlines()[0], "trace": traceback.format_exc()[-2000:]}
    result["seconds"] = round(time.perf_counter() - start, 1)
    print(f"{name}: {json.dumps({k: v for k, v in result.items() if k != 'output'})[:400]}", flush=True)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "results/gpu_check.json"))
    parser.add_argument("--cpu-smoke", action="store_true", help="run every part's code on the CPU, in miniature")
    args = parser.parse_args()
    global SMOKE
    SMOKE = args.cpu_smoke
    report: dict[str, Any] = {"started": time.strftime("%Y-%m-%dT%H:%M:%S"), "smoke": SMOKE, "environment": environment()}
    print(f"environment: {json.dumps(report['environment'])}", flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        for name, part in (("precision", precision), ("default_model_grid", default_model_grid), ("ordinal", ordinal),
                           ("oom_backoff", oom_backoff), ("pinned_memory", pinned_memory), ("repeat", repeat),
                           ("query_vs_stored", query_vs_stored), ("shared_pass", shared_pass),
                           ("embed_benchmark", embed_benchmark),
                           ("faiss_gpu", faiss_gpu)):  # last: OPQ training at d = 896 is the longest part
            report[name] = run(name, part, Path(tmp))
            Path(args.out).parent.mkdir(parents=True, exist_ok=True)
            Path(args.out).write_text(json.dumps(report, indent=1) + "\n")  # what ran so far survives a timeout
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
