"""Similarity search at scale: index types on 1M vectors of dimension 256, and query latency.

Vectors: real embeddings of the bundled example (``results/embeddings`` after ``make run``, else
5,000 windows embedded now with the default model) grown to ``--n`` vectors with the same local
structure: each synthetic vector is a real one plus Gaussian noise scaled to the spread of the real
vectors around their k-means centroids, L2-normalised like the index's. Queries are 1,000 more such
vectors, not in the index. For each index type it prints build time (training on a sample of
``--train`` vectors plus adding), memory per vector (the serialised index), queries/s with k=10 and
recall@10 against exact search (``Flat``) measured in the same run, at several nprobe / efSearch.
Then the latency of one 1-kb sequence query through the Python API with the model loaded, and of
the cold CLI, on the example's index (``results/index`` after ``make run``). Not a test.

    .venv/bin/python benchmarks/index.py [--n 1000000] [--types flat,ivf,hnsw,ivfpq]
"""

from __future__ import annotations

import argparse
import gzip
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]


def real_embeddings() -> np.ndarray:
    from genembed.data.vectors import normalise
    from genembed.data.store import read_shard

    shards = sorted((REPO / "results/embeddings").glob("*/[0-9]*.h5"))
    if shards:
        return normalise(np.concatenate([read_shard(s).embeddings for s in shards]))
    from genembed.encode.embed import EmbedSettings, Embedder, embed_tokens
    from genembed.encode.models import ModelSpec
    from genembed.encode.tokenize import TokenizerSpec, make_tokenizer

    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:])
    embedder = Embedder(ModelSpec(str(REPO / "resources/models/genembed-dnabert-tiny")), EmbedSettings())
    tok = make_tokenizer(TokenizerSpec("kmer"), embedder.tokenizer)
    rows = tok.encode_batch([seq[i * 900 : i * 900 + 500] for i in range(5000)])
    return normalise(embed_tokens(embedder, rows))


def grow(real: np.ndarray, n: int, seed: int = 0) -> np.ndarray:
    """``n`` vectors around real ones, with noise at the scale of the real clusters' spread."""
    import faiss

    from genembed.data.vectors import normalise

    km = faiss.Kmeans(real.shape[1], 64, niter=20, seed=seed, spherical=True)
    km.train(real)
    _, assign = km.index.search(real, 1)
    spread = (real - km.centroids[assign[:, 0]]).std(axis=0)
    rng = np.random.default_rng(seed)
    out = np.empty((n, real.shape[1]), dtype=np.float32)
    for i in range(0, n, 100_000):
        m = min(100_000, n - i)
        base = real[rng.integers(0, len(real), m)]
        out[i : i + m] = normalise(base + rng.normal(0, 1, base.shape).astype(np.float32) * spread)
    return out


def serialized_bytes(index) -> int:
    import faiss

    return int(faiss.serialize_index(index).size)


def timed_search(index, queries: np.ndarray, k: int = 10) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    _, ids = index.search(queries, k)
    return len(queries) / (time.perf_counter() - start), ids


def recall(found: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth)]))


def bench_types(n: int, types: list[str], train: int) -> None:
    import faiss

    from genembed.search.index import IndexSettings

    real = real_embeddings()
    print(f"real embeddings: {len(real):,} x {real.shape[1]}; growing to {n:,} vectors", flush=True)
    base = grow(real, n + 1000)
    queries, base = base[:1000], base[1000:]
    ids = np.arange(n, dtype=np.int64)
    exact = faiss.IndexIDMap2(faiss.IndexFlatIP(base.shape[1]))
    start = time.perf_counter()
    exact.add_with_ids(base, ids)
    build = time.perf_counter() - start
    exact_qps, truth = timed_search(exact, queries)
    print("\n| index | factory | build s | bytes/vector | knob | queries/s | x exact | recall@10 |")
    print("|---|---|---:|---:|---|---:|---:|---:|")
    print(f"| exact | Flat | {build:.1f} | {serialized_bytes(exact) / n:.0f} | - | {exact_qps:,.0f} | 1.0 | 1.000 |",
          flush=True)
    rng = np.random.default_rng(1)
    sample = base[rng.choice(n, min(train, n), replace=False)]
    for kind in types:
        if kind == "flat":
            continue
        factory = IndexSettings(type=kind).factory_for(n, base.shape[1])
        index = faiss.index_factory(base.shape[1], factory, faiss.METRIC_INNER_PRODUCT)
        start = time.perf_counter()
        if not index.is_trained:
            index.train(sample)
        index = index if "IVF" in factory else faiss.IndexIDMap2(index)
        index.add_with_ids(base, ids)
        build = time.perf_counter() - start
        per_vector = serialized_bytes(index) / n
        knob = "efSearch" if kind == "hnsw" else "nprobe"
        for value in ((16, 32, 64, 128) if kind == "hnsw" else (4, 8, 16, 32, 64)):
            faiss.ParameterSpace().set_index_parameter(index, knob, value)
            qps, found = timed_search(index, queries)
            print(f"| {kind} | {factory} | {build:.1f} | {per_vector:.0f} | {knob}={value} | {qps:,.0f} |"
                  f" {qps / exact_qps:.1f} | {recall(found, truth):.3f} |", flush=True)
        del index


def bench_latency(index_dir: Path) -> None:
    from genembed.search.query import Index

    if not (index_dir / "manifest.json").is_file():
        print(f"\n(no index at {index_dir}: run `make run` first for the latency numbers)")
        return
    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:])
    start = time.perf_counter()
    index = Index.open(index_dir)
    index.search({"warm": seq[:1000]}, 10)
    opened = time.perf_counter() - start
    times = []
    for i in range(50):
        start = time.perf_counter()
        index.search({"q": seq[i * 20_000 : i * 20_000 + 1000]}, 10)
        times.append(time.perf_counter() - start)
    print(f"\nAPI ({index.faiss.ntotal:,} windows, model loaded; open + first query {opened:.1f} s): one 1-kb sequence,"
          f" 50 queries: p50 {1000 * statistics.median(times):.1f} ms, p90 {1000 * sorted(times)[44]:.1f} ms")
    cold = []
    for _ in range(3):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(index_dir), "--sequence",
                        seq[:1000].decode()], check=True, capture_output=True)
        cold.append(time.perf_counter() - start)
    print(f"cold CLI (`genembed query --sequence <1 kb>`), 3 runs: median {statistics.median(cold):.1f} s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=1_000_000)
    p.add_argument("--types", default="flat,ivf,hnsw,ivfpq")
    p.add_argument("--train", type=int, default=100_000, help="training sample (index.train_size)")
    p.add_argument("--index", default=str(REPO / "results/index"), help="a built index for the latency numbers")
    args = p.parse_args()
    import faiss

    print(f"# index benchmark: faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads")
    bench_types(args.n, args.types.split(","), args.train)
    bench_latency(Path(args.index))


if __name__ == "__main__":
    main()
