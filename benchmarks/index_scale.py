"""The index at scale: OPQ + IVF-PQ over 2M vectors, built the way the workflow builds it (train
once, one part per genome, parts merged into FAISS on-disk inverted lists), with memory per vector,
recall@10 against exact search and queries/s, with and without re-scoring from the stored
embeddings.

Vectors: the example's real embeddings grown to ``--n`` (``benchmarks/index.py``: a real vector plus
noise at the scale of the real clusters' spread), written as float16 HDF5 shards of ``--genomes``
genomes, with their window tables. Each step (train, each genome's add, merge, query) runs in a fresh
process, as a workflow job would, and reports its time and peak RSS. The baseline, measured in the
same run: exact search (``Flat``) for recall and queries/s, and the same parts merged in memory for
the merge's peak RSS. Not a test.

    .venv/bin/python benchmarks/index_scale.py [--n 2000000] [--genomes 8]   # ~15 min, ~2 GB of disk
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))
SHARD = 50_000


def rss_mb(field: str = "VmRSS") -> float:
    """Resident memory of this process now, MB: all of it (VmRSS), or only what is not a mapped file
    (RssAnon: memory-mapped index files are page cache the kernel can drop)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def peak_mb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ru_maxrss, not inherited across exec), MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def write_collection(work: Path, n: int, genomes: int) -> np.ndarray:
    """Grown vectors as shards and window tables of ``genomes`` genomes; returns 1,000 queries."""
    import polars as pl

    from genembed.data.layout import ShardFiles
    from genembed.data.store import read_attrs, write_shard
    from genembed.data.windows import window_ids
    from index import grow, real_embeddings

    attrs = read_attrs(next((REPO / "results/embeddings").glob("*/[0-9]*.h5")))
    real = real_embeddings()
    vectors = grow(real, n + 1000)
    per_genome = -(-n // genomes)
    for g in range(genomes):
        name = f"genome{g}"
        part = vectors[1000 + g * per_genome : 1000 + min(n, (g + 1) * per_genome)]
        for s in range(0, len(part), SHARD):
            rows = part[s : s + SHARD]
            ids = window_ids(name, np.arange(s, s + len(rows)))
            files = ShardFiles.at(work / "results", name, f"{s // SHARD:05d}")
            write_shard(files.out, rows.astype(np.float16), ids, attrs)
            files.windows.parent.mkdir(parents=True, exist_ok=True)
            pl.DataFrame({"window_id": ids, "genome": name, "contig": "chr1",
                          "start": np.arange(s, s + len(rows)) * 500, "end": np.arange(s, s + len(rows)) * 500 + 500}
                         ).write_parquet(files.windows)
    # queries as the index sees them: float16 round trip, unit length
    from genembed.data.vectors import normalise

    np.save(work / "queries.npy", normalise(vectors[:1000].astype(np.float16)))
    return vectors[:1000]


def genomes_of(work: Path, genome: str | None = None):
    """The benchmark's genomes (all, or one), as the index stages take them."""
    from genembed.data.layout import discover

    return [g for g in discover(work / "results") if genome in (None, g.name)]


def plan_of(work: Path):
    """A run plan naming the shards' model (no model folder: the merge exports no query encoder)."""
    from genembed.data.windows import WindowPlan
    from genembed.encode.plan import RunPlan
    from genembed.data.store import read_attrs
    from genembed.encode.tokenize import TokenizerSpec

    attrs = read_attrs(genomes_of(work)[0].shards[0])
    return RunPlan("benchmark", "", str(attrs["model_fingerprint"]), 512, TokenizerSpec.parse(str(attrs["tokenizer"])),
                   WindowPlan(500, 500))


def step(name: str, work: Path, arg: str) -> dict:
    """One job, in this (fresh) process."""
    from genembed.search.index import IndexSettings, add_part, train_index
    from genembed.search.build import merge_parts

    settings = IndexSettings(type="ivfpq", train_size=100_000)
    start = time.perf_counter()
    out: dict = {}
    if name == "train":
        out = train_index(genomes_of(work), work / "trained.faiss", settings, plan_of(work))
    elif name == "add":
        out = {"count": add_part(work / "trained.faiss", genomes_of(work, arg)[:1], work / "parts" / f"{arg}.faiss")}
    elif name == "merge":
        parts = sorted(str(p) for p in (work / "parts").glob("*.faiss"))
        merge_parts(work / "trained.faiss", parts, genomes_of(work), work / "index", plan_of(work), settings,
                    query_model=False)
    elif name == "merge_in_memory":  # the baseline: every part's lists read into memory and merged there
        from genembed.search.index import read_index_file

        index = read_index_file(work / "trained.faiss")
        for part in sorted((work / "parts").glob("*.faiss")):
            index.merge_from(read_index_file(part), 0)
        out = {"count": int(index.ntotal)}
    elif name == "open":
        out = opened_memory(work)
    elif name == "query":
        out = {"runs": query(work)}
    return {**out, "seconds": time.perf_counter() - start, "peak_mb": peak_mb(), "anon_mb": rss_mb("RssAnon")}


def opened_memory(work: Path) -> dict:
    """Resident memory of the opened FAISS index alone, then of the whole query object (index, id
    table, id lookup), each measured from a fresh start."""
    import gc

    from genembed.search.index import read_index
    from genembed.search.query import Index

    before = rss_mb()
    index = read_index(work / "index", {"nprobe": 16})
    index_mb, ntotal = rss_mb() - before, int(index.ntotal)
    del index
    gc.collect()
    before = rss_mb()
    api = Index.open(work / "index")
    api._rows(np.zeros(1, dtype=np.int64))  # builds the id lookup a search needs
    return {"index_mb": index_mb, "api_mb": rss_mb() - before, "ntotal": ntotal}


def query(work: Path) -> dict:
    """Queries/s and hits (as window ids) through the query API, at several re-scoring depths."""
    from genembed.search.query import Index
    from genembed.data.windows import window_ids

    queries = np.load(work / "queries.npy")
    api = Index.open(work / "index")
    start = time.perf_counter()
    api.faiss.search(queries, 10)
    out = {"faiss": {"qps": len(queries) / (time.perf_counter() - start)}}
    for rerank in (1, 10, 30, 100):
        api.manifest["index"]["rerank"] = rerank
        start = time.perf_counter()
        hits = [api.search_vectors({str(i + j): v for j, v in enumerate(queries[i : i + 100])}, k=10)
                for i in range(0, len(queries), 100)]
        seconds = time.perf_counter() - start
        found = np.full((len(queries), 10), -1, dtype=np.int64)
        for h in hits:
            for g in h.partition_by("genome"):
                ids = window_ids(g["genome"][0], g["start"].to_numpy() // 500)
                found[g["query"].cast(int).to_numpy(), g["rank"].to_numpy() - 1] = ids
        np.save(work / f"found{rerank}.npy", found)
        out[rerank] = {"qps": len(queries) / seconds}
    return out


def run_step(name: str, work: Path, arg: str = "") -> dict:
    res = subprocess.run([sys.executable, __file__, "--step", name, str(work), arg], capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(res.stderr[-3000:])
    return json.loads(res.stdout.strip().splitlines()[-1])


def exact_truth(work: Path, queries: np.ndarray) -> tuple[np.ndarray, float]:
    """Exact top-10 window ids of the queries over every stored vector, and exact queries/s."""
    import faiss

    from genembed.data.vectors import normalise
    from genembed.data.store import read_shard

    shards = [s for g in genomes_of(work) for s in g.shards]
    flat = faiss.IndexIDMap2(faiss.IndexFlatIP(queries.shape[1]))
    for path in shards:
        s = read_shard(path)
        flat.add_with_ids(normalise(s.embeddings), s.window_id)
    start = time.perf_counter()
    _, truth = flat.search(queries, 10)
    return truth, len(queries) / (time.perf_counter() - start)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2_000_000)
    p.add_argument("--genomes", type=int, default=8)
    p.add_argument("--work", help="folder to build in (default: a temporary one, removed)")
    p.add_argument("--step", nargs=3, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.step:
        print(json.dumps(step(args.step[0], Path(args.step[1]), args.step[2])))
        return
    import faiss

    with tempfile.TemporaryDirectory(dir=args.work) as tmp:
        work = Path(tmp)
        t = time.perf_counter()
        write_collection(work, args.n, args.genomes)
        print(f"# index at scale: faiss {faiss.__version__}, {faiss.omp_get_max_threads()} threads; {args.n:,} vectors"
              f" in {args.genomes} genomes written in {time.perf_counter() - t:.0f} s", flush=True)
        queries = np.load(work / "queries.npy")
        truth, exact_qps = exact_truth(work, queries)
        train = run_step("train", work, str(args.genomes))
        print(f"train {train['factory']} on 100,000 vectors: {train['seconds']:.0f} s, peak {train['peak_mb']:.0f} MB",
              flush=True)
        adds = [run_step("add", work, f"genome{g}") for g in range(args.genomes)]
        print(f"add, one job per genome ({adds[0]['count']:,} vectors): {np.mean([a['seconds'] for a in adds]):.0f} s"
              f" each, peak {max(a['peak_mb'] for a in adds):.0f} MB", flush=True)
        merge = run_step("merge", work)
        in_memory = run_step("merge_in_memory", work)
        print(f"merge on disk: {merge['seconds']:.0f} s, peak RSS {merge['peak_mb']:.0f} MB, anonymous memory at the end"
              f" {merge['anon_mb']:.0f} MB; in memory (baseline): {in_memory['seconds']:.0f} s, peak RSS"
              f" {in_memory['peak_mb']:.0f} MB, anonymous {in_memory['anon_mb']:.0f} MB", flush=True)
        ivfdata = next((work / "index").glob("*.ivfdata")).stat().st_size
        index_file = (work / "index/index.faiss").stat().st_size
        q = {**run_step("open", work), **run_step("query", work)}
        n = q["ntotal"]
        print(f"\non disk: lists {ivfdata / n:.1f} B/vector (codes + ids), index file {index_file / 1e6:.1f} MB"
              f" (quantizer, OPQ, codebooks: {index_file / n:.1f} B/vector)")
        print(f"memory of the opened FAISS index: {q['index_mb']:.1f} MB = {q['index_mb'] * 2**20 / n:.1f} B/vector;"
              f" of the whole query object (index, id table, id lookup): {q['api_mb']:.0f} MB ="
              f" {q['api_mb'] * 2**20 / n:.1f} B/vector")
        runs = q["runs"]
        print(f"FAISS alone (PQ codes, no id table, 1,000 queries in one call): {runs.pop('faiss')['qps']:,.0f} queries/s")
        print("\n| search through the query API (k = 10, nprobe 16) | queries/s | x exact | recall@10 |")
        print("| --- | ---: | ---: | ---: |")
        print(f"| exact (`Flat`, FAISS alone, {queries.shape[1] * 4} B/vector in memory) | {exact_qps:,.0f} | 1.0 | 1.000 |")
        from index import recall

        for rerank, run in runs.items():
            found = np.load(work / f"found{rerank}.npy")
            what = "PQ codes only" if rerank == "1" else f"re-scored, rerank {rerank}"
            print(f"| {what} | {run['qps']:,.0f} | {run['qps'] / exact_qps:.1f} | {recall(found, truth):.3f} |")


if __name__ == "__main__":
    main()
