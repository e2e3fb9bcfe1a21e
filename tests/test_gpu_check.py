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
    parts = ("precision", "default_model_grid", "ordinal", "oom_backoff", "pinned_memory", "repeat", "query_vs_stored",
             "shared_pass", "embed_benchmark", "faiss_gpu")
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
    assert len(families) == 9 and all("error" not in v for v in families.values()), families
    assert all(v["fp32_finite"] and v["bf16_finite"] and v["bf16_min_cosine"] > 0.98 for v in families.values())
    assert families["hyena-like, FFT convolutions"]["bf16_ran_in"] == "float32"  # no bf16 FFT: fell back
    grid = {k: v for k, v in report["default_model_grid"].items() if "/" in k}
    assert len(grid) == 8 and all(v["finite"] for v in grid.values())  # 2 strands x 2 poolings x fp32, bf16
    assert all(v["min_cosine"] > 0.9999 for k, v in grid.items() if k.endswith("fp32"))
    assert report["ordinal"]["refused"] and "cuda:0" in report["ordinal"]["message"]
    assert report["repeat"]["max_abs_difference"] < 1e-5
    assert report["query_vs_stored"]["min_cosine"] > 0.99
    assert report["shared_pass"]["min_cosine"] > 0.9999 and report["shared_pass"]["windows"] == 79
    assert {"d256 IVF16,Flat", "d256 OPQ8,IVF16,PQ8", "d896 IVF16,Flat"} <= set(report["faiss_gpu"])
    recall = {k: v["cpu_recall_at_10"] for k, v in report["faiss_gpu"].items() if k.startswith("d")}
    assert all(r > 0 for r in recall.values()) and all(r > 0.5 for k, r in recall.items() if "Flat" in k), recall
    assert report["embed_benchmark"]["returncode"] == 0 and any("windows/s" in line for line in
                                                                report["embed_benchmark"]["output"])
    assert "skipped" in report["oom_backoff"] and "skipped" in report["pinned_memory"]
