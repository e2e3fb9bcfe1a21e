"""benchmarks/gpu_check.sh, the one script a session lent a GPU runs: here (no GPU) it must run to the
end and say why each CUDA part was skipped, and its parts' code must run on the CPU in miniature."""

from __future__ import annotations

import json
import subprocess
import sys

from helpers import REPO


def test_the_gpu_check_runs_to_the_end_without_a_gpu_and_says_why_each_part_was_skipped(tmp_path):
    out = tmp_path / "gpu_check.json"
    res = subprocess.run(["bash", str(REPO / "benchmarks/gpu_check.sh"), str(out)], capture_output=True, text=True,
                         timeout=300)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    parts = ("precision", "oom_backoff", "pinned_memory", "embed_benchmark", "faiss_gpu")
    assert set(parts) <= set(report) and report["environment"]["torch"]
    import torch

    if not torch.cuda.is_available():
        assert all("skipped" in report[p] and report[p]["skipped"] for p in parts), report


def test_every_gpu_check_part_runs_its_code_on_the_cpu(tmp_path):
    out = tmp_path / "smoke.json"
    res = subprocess.run([sys.executable, str(REPO / "benchmarks/gpu_check.py"), "--cpu-smoke", "--out", str(out)],
                         capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stderr[-2000:]
    report = json.loads(out.read_text())
    families = {k: v for k, v in report["precision"].items() if k != "seconds"}
    assert len(families) == 7 and all("error" not in v for v in families.values()), families
    assert all(v["fp32_finite"] and v["bf16_finite"] and v["bf16_min_cosine"] > 0.98 for v in families.values())
    assert report["embed_benchmark"]["returncode"] == 0 and any("windows/s" in line for line in
                                                                report["embed_benchmark"]["output"])
    assert report["faiss_gpu"]["cpu_train_seconds"] > 0
    assert "skipped" in report["oom_backoff"] and "skipped" in report["pinned_memory"]
