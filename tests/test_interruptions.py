"""kill -9 of the whole workflow (Snakemake and its jobs) during embedding and again during index
building; the reruns (--unlock, then --rerun-incomplete) must give exactly what an uninterrupted
run gives. The two runs embed in fp32 on the CPU, so this is also the determinism check: same
seeds (config `seed`), bit-identical embeddings, index and query results."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest

from helpers import SNAKEMAKE, small_workflow, snakemake

pytestmark = pytest.mark.workflow


def _kill_when(d: Path, started: str, seconds: float = 300) -> None:
    """Run the workflow and kill -9 Snakemake and every job it started once ``started`` exists."""
    proc = subprocess.Popen(SNAKEMAKE + ["-d", str(d), "--cores", "2", "--rerun-incomplete"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    end = time.time() + seconds
    while not (d / started).exists():
        if proc.poll() is not None or time.time() > end:
            raise AssertionError(f"the run ended (rc {proc.returncode}) before {started} appeared")
        time.sleep(0.1)
    time.sleep(0.5)  # into the job's work
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    snakemake(d, "--unlock")


@pytest.fixture(scope="module")
def runs(tmp_path_factory, ecoli_slice, small_workflow_run):
    whole = small_workflow_run
    killed = small_workflow(tmp_path_factory.mktemp("interrupted"), ecoli_slice)
    _kill_when(killed, "logs/embed/eco/00001.log")
    partial = sorted(p.name for p in (killed / "results/embeddings/eco").glob("[0-9]*.h5"))
    _kill_when(killed, "logs/index/add/eco.log")
    res = snakemake(killed, "--cores", "2", "--rerun-incomplete")
    return whole, killed, partial, res


def test_a_workflow_killed_twice_completes_on_rerun(runs):
    _, killed, partial, res = runs
    assert res.returncode == 0
    assert len(partial) < 2  # the first kill came before every shard was embedded
    assert not list((killed / "results").rglob("*.tmp-*")), "temporary files left behind"


def test_reruns_after_kill_9_equal_an_uninterrupted_run_bit_for_bit(runs):
    whole, killed, _, _ = runs
    a, b = whole / "results", killed / "results"
    shards = sorted((a / "embeddings/eco").glob("[0-9]*.h5"))
    assert len(shards) == 2
    for shard in shards:
        with h5py.File(shard) as fa, h5py.File(b / "embeddings/eco" / shard.name) as fb:
            assert np.array_equal(fa["embeddings"][:], fb["embeddings"][:])
            assert np.array_equal(fa["window_id"][:], fb["window_id"][:])
    assert (a / "index/index.faiss").read_bytes() == (b / "index/index.faiss").read_bytes()
    assert pl.read_parquet(a / "index/windows.parquet").equals(pl.read_parquet(b / "index/windows.parquet"))
    for table in ("reports/clusters/clusters.tsv", "reports/promoters/metrics.tsv"):
        assert (a / table).read_text() == (b / table).read_text(), table


def test_two_runs_give_the_same_query_results(runs):
    whole, killed, _, _ = runs
    hits = []
    for d in (whole, killed):
        out = subprocess.run([*SNAKEMAKE[:1], "-m", "genembed.run.cli", "query", "--index", str(d / "results/index"),
                              "--region", "eco:NC_000913.3:120000-121000", "-k", "5"],
                             capture_output=True, text=True, check=True).stdout
        hits.append(out)
    assert hits[0] == hits[1] and len(hits[0].splitlines()) == 6
