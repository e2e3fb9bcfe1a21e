"""Windowing and tokenizing stream the genome: peak memory stays flat and time grows linearly with
genome size. For each size, a synthetic genome (random sequence, 10 contigs, N gaps) is written,
prepared (validated bgzip + faidx) and windowed and tokenized shard by shard, in a fresh process
whose peak RSS is measured. Prints seconds, Mbp/s and peak RSS per size, and the time ratio
against the smallest size next to the size ratio (linear = equal).

    .venv/bin/python benchmarks/scale.py                    # 50, 100, 200 Mbp (a few minutes)
    .venv/bin/python benchmarks/scale.py --mbp 100 300 1000 # up to 1 Gbp (needs ~3 GB of disk)
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
MODEL = REPO / "resources/models/genembed-dnabert-tiny"


def make_genome(path: Path, mbp: int, seed: int = 0) -> None:
    """10 contigs of random sequence with a 10-kb N gap in each, written in 1-Mbp blocks."""
    rng = np.random.default_rng(seed)
    per_contig = mbp * 1_000_000 // 10
    with open(path, "wb") as fh:
        for c in range(10):
            fh.write(f">chr{c + 1}\n".encode())
            written = 0
            while written < per_contig:
                n = min(1_000_000, per_contig - written)
                block = np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].tobytes()
                if written == 0:
                    block = block[:5_000] + b"N" * 10_000 + block[15_000:]
                fh.write(b"\n".join(block[i : i + 80] for i in range(0, len(block), 80)) + b"\n")
                written += n


def run_stages(fasta: str, work: str) -> dict:
    """In this process: prepare, then window and tokenize every shard; time and peak RSS."""
    from genembed.data.genome import prepare_fasta
    from genembed.encode.models import ModelSpec, load_tokenizer
    from genembed.encode.tokenize import KmerTokenizer, tokenize_shard
    from genembed.data.windows import WindowSpec, shard_count, write_shard_windows

    work_dir = Path(work)
    t0 = time.perf_counter()
    contigs = prepare_fasta(fasta, work_dir / "genome.fa.gz")
    t1 = time.perf_counter()
    spec = WindowSpec(size=500, stride=250, shard_size=50_000)
    tok = KmerTokenizer.from_hf(load_tokenizer(MODEL, ModelSpec(str(MODEL))), 6, False)
    windows = 0
    for shard in range(shard_count(contigs, spec)):
        w = work_dir / "w.parquet"
        windows += write_shard_windows("synthetic", work_dir / "genome.fa.gz", spec, shard, w)
        tokenize_shard(w, work_dir / "genome.fa.gz", tok, 512, work_dir / "t.npy", work_dir / "o.npy")
    t2 = time.perf_counter()
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"prepare_s": t1 - t0, "windows_tokens_s": t2 - t1, "windows": windows, "peak_rss_mb": rss_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mbp", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--stages", nargs=2, help=argparse.SUPPRESS)  # internal: FASTA WORK
    args = parser.parse_args()
    if args.stages:
        print(json.dumps(run_stages(*args.stages)))
        return
    rows = []
    for mbp in args.mbp:
        with tempfile.TemporaryDirectory() as tmp:
            fasta = Path(tmp) / "g.fa"
            make_genome(fasta, mbp)
            out = subprocess.run([sys.executable, __file__, "--stages", str(fasta), tmp],
                                 capture_output=True, text=True, check=True).stdout
            rows.append({"mbp": mbp, **json.loads(out.splitlines()[-1])})
            r = rows[-1]
            print(f"{mbp:>5} Mbp: prepare {r['prepare_s']:6.1f} s, windows+tokens {r['windows_tokens_s']:6.1f} s "
                  f"({mbp / r['windows_tokens_s']:.2f} Mbp/s, {r['windows']:,} windows), peak RSS {r['peak_rss_mb']:.0f} MB",
                  flush=True)
    base = rows[0]
    for r in rows[1:]:
        total = (r["prepare_s"] + r["windows_tokens_s"]) / (base["prepare_s"] + base["windows_tokens_s"])
        print(f"{r['mbp']} / {base['mbp']} Mbp: size x{r['mbp'] / base['mbp']:.1f}, time x{total:.2f}, "
              f"peak RSS x{r['peak_rss_mb'] / base['peak_rss_mb']:.2f}")


if __name__ == "__main__":
    main()
