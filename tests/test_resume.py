"""A killed embedding job leaves whole shards or none, and its rerun gives what an uninterrupted run gives."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from genembed.data.store import read_shard
from helpers import REPO

pytestmark = pytest.mark.workflow

MODEL = REPO / "resources/models/genembed-conv"


def embed_cmd(fasta: Path, out: Path) -> list[str]:
    return [sys.executable, "-m", "genembed.run.cli", "embed", "--fasta", str(fasta), "--genome", "eco", "--out", str(out),
            "--model", str(MODEL), "--tokenizer", "kmer", "--k", "1", "--window", "500", "--stride", "250", "--shard-size", "100"]


def kill_when(cmd: list[str], out: Path, shards: int) -> None:
    """Start ``cmd`` and SIGKILL it once ``shards`` embedding files exist."""
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 300
    while len(list((out / "embeddings/eco").glob("*.h5"))) < shards:
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()


def check_whole(out: Path) -> None:
    """Every shard present is complete: all its windows, readable, matching its windows table."""
    for h5 in (out / "embeddings/eco").glob("*.h5"):
        shard = read_shard(h5)
        ids = pl.read_parquet(out / "windows/eco" / f"{h5.stem}.parquet")["window_id"].to_numpy()
        np.testing.assert_array_equal(shard.window_id, ids)
        assert np.isfinite(shard.embeddings).all()


def test_killed_embedding_resumes_to_the_uninterrupted_result(tmp_path, ecoli_sequence):
    fasta = tmp_path / "eco.fa"
    fasta.write_bytes(b">chr\n" + ecoli_sequence + b"\n")  # 200 kb: 799 windows in 8 shards
    reference = tmp_path / "reference"
    subprocess.run(embed_cmd(fasta, reference), check=True, capture_output=True)

    out = tmp_path / "resumed"
    kill_when(embed_cmd(fasta, out), out, 1)
    check_whole(out)
    first = len(list((out / "embeddings/eco").glob("*.h5")))
    kill_when(embed_cmd(fasta, out), out, first + 2)
    check_whole(out)
    kept = sorted((out / "embeddings/eco").glob("*.h5"))
    assert 1 <= len(kept) < 8
    done = subprocess.run(embed_cmd(fasta, out), check=True, capture_output=True, text=True)
    assert done.stdout.count("already embedded") == len(kept)

    names = sorted(p.name for p in (reference / "embeddings/eco").glob("*.h5"))
    assert len(names) == 8 and sorted(p.name for p in (out / "embeddings/eco").glob("*.h5")) == names
    for name in names:
        a, b = read_shard(reference / "embeddings/eco" / name), read_shard(out / "embeddings/eco" / name)
        np.testing.assert_array_equal(a.window_id, b.window_id)
        np.testing.assert_array_equal(a.embeddings, b.embeddings)
    assert not [p for p in out.rglob(".*") if "tmp" in p.name]  # temporaries of the killed jobs are gone
