"""Query speed: sequences of 500 bp, 5 kb and 100 kb against the bundled example's index, through the
Python API (warm), the CLI (a cold process per query) and `genembed serve` (one client, then 8
concurrent clients in a bounded request loop on 127.0.0.1), with the server's memory. The baseline,
measured in the same run, is the whole-sequence window search (`Index.search`: one embedding per
query, forward strand only, no chaining) on the 500-bp queries. Not a test: it prints numbers.

The index is built from the example's embeddings (``results/`` after ``make run``) into a temporary
folder, so it has what this version keeps (vectors, genome copies).

    .venv/bin/python benchmarks/query.py [--queries 40] [--requests 20]
"""

from __future__ import annotations

import argparse
import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SIZES = {"500 bp": 500, "5 kb": 5_000, "100 kb": 100_000}


def build(work: Path) -> Path:
    from genembed.search.build import build_index
    from genembed.data.layout import PLAN, discover
    from genembed.encode.plan import RunPlan

    results = REPO / "results"
    if not (results / PLAN).is_file():
        sys.exit("run `make run` first: the benchmark indexes the example's embeddings (results/)")
    start = time.perf_counter()
    build_index(discover(results), work / "index", RunPlan.read(results / PLAN))
    print(f"index built from results/ in {time.perf_counter() - start:.1f} s")
    return work / "index"


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) * 1000


def api(index_dir: Path, n: int) -> dict[str, bytes]:
    from genembed.search.query import Index

    ix = Index.open(index_dir)
    genome = ix.genome(sorted(ix.manifest["genomes"])[0])
    contig, length = max(genome.contigs.items(), key=lambda kv: kv[1])
    rng = np.random.default_rng(0)
    samples = {}
    ix.search_loci({"warm": genome.fetch(contig, 0, 1000)})  # loads the encoder
    print(f"\nAPI, warm, k = 10 ({ix.searcher.faiss.ntotal:,} windows; {n} queries each)")
    print("| query | queries/s | p50 ms | p95 ms | top locus is the source |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for label, size in SIZES.items():
        starts = rng.integers(0, length - size, n if size < 100_000 else max(3, n // 10))
        seqs = [genome.fetch(contig, int(s), int(s) + size) for s in starts]
        samples[label] = seqs[0]
        times, found = [], 0
        for s, seq in zip(starts, seqs):
            t = time.perf_counter()
            top = ix.search_loci({"q": seq}).row(0, named=True)
            times.append(time.perf_counter() - t)
            found += abs(top["start"] - int(s)) <= 250 and top["contig"] == contig
        print(f"| {label} | {len(times) / sum(times):.1f} | {pct(times, 50):.1f} | {pct(times, 95):.1f} | {found}/{len(times)} |")
    name = sorted(ix.manifest["genomes"])[0]
    for label, size in (("5 kb region (stored vectors)", 5_000), ("100 kb region (stored vectors)", 100_000)):
        times = []
        for s in rng.integers(0, (length - size) // 250, n // 4) * 250:
            t = time.perf_counter()
            ix.search_region(f"{name}:{contig}:{s}-{s + size}")
            times.append(time.perf_counter() - t)
        print(f"| {label} | {len(times) / sum(times):.1f} | {pct(times, 50):.1f} | {pct(times, 95):.1f} | |")
    times = []
    for s in rng.integers(0, length - 500, n):
        t = time.perf_counter()
        ix.search({"q": genome.fetch(contig, int(s), int(s) + 500)})
        times.append(time.perf_counter() - t)
    print(f"| 500 bp, baseline (`Index.search`, one strand, no chaining) | {len(times) / sum(times):.1f} |"
          f" {pct(times, 50):.1f} | {pct(times, 95):.1f} | |")
    ix.close()
    return samples


def cli(index_dir: Path, samples: dict[str, bytes], work: Path) -> None:
    print("\nCLI, a cold process per query (imports, index and encoder load included)")
    print("| query | seconds |")
    print("| --- | ---: |")
    for label, seq in samples.items():
        (work / "q.fa").write_bytes(b">q\n" + seq + b"\n")
        t = time.perf_counter()
        subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(index_dir), "--fasta",
                        str(work / "q.fa"), "--out", str(work / "hits.tsv")], check=True)
        print(f"| {label} | {time.perf_counter() - t:.2f} |")


def server(index_dir: Path, samples: dict[str, bytes], requests: int) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "-m", "genembed.run.cli", "serve", "--index", str(index_dir), "--port", str(port)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}/api/search"
    started = time.perf_counter()
    while True:
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/api/info", timeout=2).read()
            break
        except OSError:
            time.sleep(0.1)
    print(f"\nServer (ready {time.perf_counter() - started:.1f} s after start); k = 10")
    print("| query | clients | requests | requests/s | p50 ms | p95 ms |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")

    def one(seq: bytes) -> float:
        body = json.dumps({"sequence": seq.decode()}).encode()
        t = time.perf_counter()
        req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=300) as r:
            r.read()
        return time.perf_counter() - t

    try:
        for label, seq in samples.items():
            for clients in (1, 8):
                n = requests if label != "100 kb" else max(4, requests // 5)
                t = time.perf_counter()
                with ThreadPoolExecutor(clients) as pool:
                    times = list(pool.map(one, [seq] * n))
                wall = time.perf_counter() - t
                print(f"| {label} | {clients} | {n} | {n / wall:.1f} | {pct(times, 50):.1f} | {pct(times, 95):.1f} |")
        status = dict(line.split(":", 1) for line in open(f"/proc/{proc.pid}/status") if ":" in line)
        print(f"\nserver memory: {status['VmRSS'].strip()} resident, peak {status['VmHWM'].strip()}")
    finally:
        proc.terminate()
        proc.wait(30)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=40, help="API queries per size (a tenth for 100 kb)")
    parser.add_argument("--requests", type=int, default=40, help="server requests per size and client count")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        index_dir = build(work)
        samples = api(index_dir, args.queries)
        cli(index_dir, samples, work)
        server(index_dir, samples, args.requests)


if __name__ == "__main__":
    main()
