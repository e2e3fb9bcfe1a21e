"""Summarise a workflow run's per-job benchmark logs (benchmarks/logs/**.tsv) by rule:
jobs, summed and longest wall time, largest peak memory. Run after `make run`:

    .venv/bin/python benchmarks/stage_times.py [benchmarks/logs]
"""

from __future__ import annotations

import sys
from pathlib import Path

import polars as pl


def summarise(root: Path) -> pl.DataFrame:
    rows = []
    for tsv in sorted(root.rglob("*.tsv")):
        rule = tsv.relative_to(root).parts[0].removesuffix(".tsv")
        t = pl.read_csv(tsv, separator="\t", null_values=["-", "NA"])
        rows.append({"rule": rule, "s": float(t["s"][-1]), "max_rss_mb": float(t["max_rss"][-1] or 0)})
    if not rows:
        raise SystemExit(f"no benchmark logs under {root}")
    return (pl.DataFrame(rows).group_by("rule", maintain_order=True)
            .agg(pl.len().alias("jobs"), pl.col("s").sum().round(1).alias("total_s"),
                 pl.col("s").max().round(1).alias("longest_s"), pl.col("max_rss_mb").max().round(0).alias("peak_rss_mb")))


if __name__ == "__main__":
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "benchmarks/logs")
    with pl.Config(tbl_rows=50, tbl_hide_dataframe_shape=True):
        print(summarise(root))
