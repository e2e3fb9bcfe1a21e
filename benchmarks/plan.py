"""Planning at human scale: how long the workflow's dry-run takes to lay out every job of GRCh38
(195 contigs, 3.1 Gbp, from ``resources/plans/GRCh38.fai``) at several window and shard sizes, and
how many jobs it plans. The FASTA is a sparse file of the real size: the plan reads only the .fai
beside it. Not a test.

    .venv/bin/python benchmarks/plan.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
GRCH38 = REPO / "resources/plans/GRCh38.fai"
SETTINGS = [  # (size, stride, shard_size)
    (500, 250, 2_500),
    (500, 250, 25_000),
    (500, 250, 50_000),
    (1000, 1000, 50_000),
]


def fasta_size(fai: Path) -> int:
    """Bytes of the FASTA a .fai describes: the last record's offset plus its lines."""
    _, length, offset, per_line, width = fai.read_text().splitlines()[-1].split("\t")
    full, rest = divmod(int(length), int(per_line))
    return int(offset) + full * int(width) + (rest + 1 if rest else 0)


def dry_run(d: Path) -> tuple[float, dict[str, int]]:
    start = time.perf_counter()
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(d), "-n",
                          "--quiet", "rules"], capture_output=True, text=True, check=True)
    seconds = time.perf_counter() - start
    return seconds, {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", res.stdout, re.M)}


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        fasta = d / "GRCh38.fa"
        with open(fasta, "wb") as fh:
            fh.truncate(fasta_size(GRCH38))
        shutil.copy(GRCH38, f"{fasta}.fai")
        (d / "config").mkdir()
        (d / "config/genomes.tsv").write_text(f"genome\tfasta\nGRCh38\t{fasta}\n")
        cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
        cfg["model"]["path"] = str(REPO / "resources/models/genembed-dnabert-tiny")
        print("| window / stride | shard_size | shards | jobs | dry-run |")
        print("| --- | ---: | ---: | ---: | ---: |")
        for size, stride, shard_size in SETTINGS:
            cfg["windows"].update(size=size, stride=stride, shard_size=shard_size)
            (d / "config/config.yaml").write_text(yaml.safe_dump(cfg))
            seconds, jobs = dry_run(d)
            print(f"| {size} / {stride} bp | {shard_size:,} | {jobs['embed']:,} | {jobs['total']:,} | {seconds:.1f} s |",
                  flush=True)


if __name__ == "__main__":
    main()
