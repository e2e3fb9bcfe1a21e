"""The workflow on a real single-node SLURM cluster (tests/slurm/cluster.sh: slurmctld, slurmd,
slurmdbd + MariaDB for sacct, two fake GPUs), submitted with the project's profile.

One scenario, checked by several tests: a run is interrupted (Snakemake killed, its jobs
cancelled) once the embedding jobs are queued; the rerun (--rerun-incomplete, set by the
profile) must do only what is missing while one of its embedding jobs is cancelled by the
scheduler and retried with more memory; the results must equal a local run's.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import polars as pl
import pytest
import yaml

from helpers import REPO, SNAKEMAKE, small_workflow

CLUSTER = REPO / "tests/slurm/cluster.sh"
PROFILE = REPO / "profiles/slurm"
FAST_POLLING = ["--slurm-init-seconds-before-status-checks", "2", "--seconds-between-status-checks", "2"]
BINARIES = ("slurmctld", "slurmd", "slurmdbd", "munged", "mariadbd", "sacct")


def _why_not() -> str | None:
    if sys.platform != "linux":
        return "SLURM test needs Linux"
    if os.geteuid() != 0:
        return "SLURM test needs root (it starts slurmctld, slurmd, slurmdbd, munged and MariaDB)"
    if not all(shutil.which(b) for b in BINARIES) and not shutil.which("apt-get"):
        return "SLURM test needs the Debian packages slurm-wlm slurmdbd munge mariadb-server, or apt-get to install them"
    if importlib_missing("snakemake_executor_plugin_slurm"):
        return "SLURM test needs snakemake-executor-plugin-slurm (pip install -c constraints.txt -e '.[slurm]')"
    return None


def importlib_missing(module: str) -> bool:
    import importlib.util

    return importlib.util.find_spec(module) is None


pytestmark = [pytest.mark.workflow, pytest.mark.skipif(_why_not() is not None, reason=_why_not() or "")]


def _sacct(env: dict) -> pl.DataFrame:
    out = subprocess.run(["sacct", "-X", "-n", "-P", "-a", "-S", "2000-01-01", "-o", "JobID,Comment,Partition,AllocTRES,State,ReqMem,Submit"],
                         env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return pl.DataFrame(rows, schema={c: pl.String for c in ("job", "comment", "partition", "tres", "state", "req_mem", "submit")},
                        orient="row")


def _queue(env: dict) -> pl.DataFrame:
    out = subprocess.run(["squeue", "-h", "-o", "%i|%k|%T"], env=env, capture_output=True, text=True, check=True).stdout
    rows = [line.split("|") for line in out.splitlines() if line]
    return pl.DataFrame(rows, schema={c: pl.String for c in ("job", "comment", "state")}, orient="row")


def _start(command: list[str], env: dict, log: Path) -> subprocess.Popen:
    """Snakemake in the background, in its own process group, its output in ``log``."""
    with open(log, "w") as out:
        proc = subprocess.Popen(["timeout", "-k", "10", "600", *command], env=env, stdout=out,
                                stderr=subprocess.STDOUT, start_new_session=True)
    proc.log = log
    return proc


def _wait(what: str, test, proc: subprocess.Popen | None = None, seconds: float = 300):
    end = time.time() + seconds
    while time.time() < end:
        got = test()
        if got:
            return got
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"snakemake ended (rc {proc.returncode}) before {what}:\n{proc.log.read_text()[-3000:]}")
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    state = tmp_path_factory.mktemp("slurm")
    start = subprocess.run(["bash", str(CLUSTER), "start", str(state)], capture_output=True, text=True, timeout=600)
    if start.returncode != 0:
        pytest.fail(f"could not start the SLURM test cluster: {start.stderr.strip()}")
    env = dict(os.environ, SLURM_CONF=str(state / "slurm.conf"))
    yield env
    subprocess.run(["bash", str(CLUSTER), "stop", str(state)], capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def scenario(tmp_path_factory, ecoli_slice, cluster):
    """Run, interrupt, rerun with a scheduler-cancelled job; returns what each phase did."""
    d = small_workflow(tmp_path_factory.mktemp("on_slurm"), ecoli_slice)
    config = yaml.safe_load((d / "config/config.yaml").read_text())
    config["embed"]["device"] = "cpu"  # the cluster's GPUs are fake (no CUDA): embed on the CPU on purpose, since a
    config["evaluate"]["enabled"] = False  # job given a GPU it cannot use fails (device); evaluate is compared nowhere
    (d / "config/config.yaml").write_text(yaml.safe_dump(config))
    command = SNAKEMAKE + ["-d", str(d), "--profile", str(PROFILE), *FAST_POLLING]

    # Phase 1: interrupted once both embedding jobs are queued (everything before them is done)
    first = _start(command, cluster, d / "phase1.log")
    _wait("both embedding jobs queued", lambda: _queue(cluster).filter(
        pl.col("comment").str.starts_with("rule_embed")).height >= 2, first)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait()
    for job in _queue(cluster)["job"]:
        subprocess.run(["scancel", job], env=cluster, check=True)
    _wait("the queue to drain", lambda: _queue(cluster).is_empty(), seconds=60)
    phase1 = _sacct(cluster)

    # Phase 2: the rerun (after --unlock: the killed run left its lock); the scheduler cancels its
    # first running embedding job once
    subprocess.run(command + ["--unlock"], env=cluster, capture_output=True, check=True, timeout=120)
    second = _start(command, cluster, d / "phase2.log")
    running = _wait("an embedding job running", lambda: _queue(cluster).filter(
        pl.col("comment").str.starts_with("rule_embed") & (pl.col("state") == "RUNNING"))["job"].to_list(), second)
    subprocess.run(["scancel", running[0]], env=cluster, check=True)
    second.wait(timeout=620)
    log = second.log.read_text()
    all_jobs = _sacct(cluster)
    return {"dir": d, "rc": second.returncode, "log": log, "phase1": phase1,
            "phase2": all_jobs.filter(~pl.col("job").is_in(phase1["job"].to_list())), "cancelled": running[0]}


def test_the_interrupted_workflow_completes_on_slurm(scenario):
    assert scenario["rc"] == 0, scenario["log"][-3000:]
    assert (scenario["dir"] / "results/reports/promoters/promoters.html").is_file()


def test_embedding_jobs_run_on_the_gpu_partition_with_a_gpu(scenario):
    jobs = pl.concat([scenario["phase1"], scenario["phase2"]])
    embed = jobs.filter(pl.col("comment").str.starts_with("rule_embed") & (pl.col("state") == "COMPLETED"))
    assert embed.height == 2
    assert (embed["partition"] == "gpu").all() and embed["tres"].str.contains("gres/gpu=1").all()
    others = jobs.filter(~pl.col("comment").str.starts_with("rule_embed"))
    assert (others["partition"] == "cpu").all() and not others["tres"].str.contains("gres/gpu").any()


def test_a_job_cancelled_by_the_scheduler_is_retried_with_more_memory(scenario):
    jobs = scenario["phase2"]
    cancelled = jobs.filter(pl.col("job") == scenario["cancelled"]).row(0, named=True)
    assert cancelled["state"].startswith("CANCELLED") and cancelled["comment"].startswith("rule_embed")
    embed = jobs.filter(pl.col("comment").str.starts_with("rule_embed") & (pl.col("state") == "COMPLETED"))
    first_try = int(cancelled["req_mem"].rstrip("M")) // 1000  # GB: array jobs add 1 MB for their payload
    assert embed.height == 2 and 2 * first_try in [int(m.rstrip("M")) // 1000 for m in embed["req_mem"]]  # x attempt


def test_the_rerun_does_only_what_the_interrupted_run_left_undone(scenario):
    rules = lambda jobs: {c.split("_wildcards")[0] for c in jobs["comment"]}  # noqa: E731
    done_before = rules(scenario["phase1"].filter(pl.col("state") == "COMPLETED"))
    assert {"rule_prepare_genome", "rule_describe_model", "rule_windows", "rule_tokenize"} <= done_before
    after_embedding = {"rule_embed", "rule_train_index", "rule_add_to_index", "rule_merge_index", "rule_cluster_report",
                       "rule_promoter_report"}
    # the stranded promoter model's jobs need no embedding: the interruption may catch them running or not
    assert after_embedding <= rules(scenario["phase2"]) <= after_embedding | {"rule_promoter_model", "rule_promoter_scores"}
    completed = set(scenario["phase1"].filter(pl.col("state") == "COMPLETED")["comment"])
    assert not completed & set(scenario["phase2"]["comment"]), "a job completed before the interruption ran again"


def test_outputs_on_slurm_equal_a_local_run(scenario, small_workflow_run):
    a, b = small_workflow_run / "results", scenario["dir"] / "results"
    for shard in sorted((a / "embeddings/eco").glob("[0-9]*.h5")):
        with h5py.File(shard) as fa, h5py.File(b / "embeddings/eco" / shard.name) as fb:
            assert np.array_equal(fa["embeddings"][:], fb["embeddings"][:])
            assert np.array_equal(fa["window_id"][:], fb["window_id"][:])
    assert pl.read_parquet(a / "index/windows.parquet").equals(pl.read_parquet(b / "index/windows.parquet"))
    for table in ("reports/clusters/clusters.tsv", "reports/promoters/metrics.tsv"):
        assert (a / table).read_text() == (b / table).read_text(), table


def test_per_shard_cpu_jobs_go_to_slurm_as_job_arrays(scenario):
    """The windows jobs of all shards become ready together (after prepare_genome): one array.
    (Tokenize jobs become ready as their windows finish, so they form arrays only by timing.)"""
    jobs = scenario["phase1"].filter(pl.col("comment").str.starts_with("rule_windows"))
    assert jobs.height == 2 and jobs["job"].str.contains("_").all()  # array tasks: <array id>_<task>
    assert jobs["job"].str.split("_").list.first().n_unique() == 1  # one sbatch for both shards
