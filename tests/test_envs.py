"""The conda envs the rules use name the same packages as pyproject.toml, pinned."""

import re
import tomllib

import pytest
import yaml
from helpers import REPO

# conda package names that differ from the PyPI names; the GPU env's faiss-gpu stands for faiss-cpu
CONDA_TO_PYPI = {"pytorch": "torch", "faiss-gpu": "faiss-cpu", "parasail-python": "parasail"}
CONDA_ONLY = {"python", "cuda-version"}  # the interpreter and the CUDA runtime selector
NOT_IN_JOBS = {"snakemake", "fastapi", "uvicorn"}  # run the workflow or the query server; no rule script imports them


def _name(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower().replace("_", "-")


def _pyproject() -> set[str]:
    deps = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]
    return {_name(d) for d in deps} - NOT_IN_JOBS


@pytest.mark.parametrize("env", ["cpu", "gpu"])
def test_conda_envs_name_the_packages_of_pyproject_and_pin_them(env):
    spec = yaml.safe_load((REPO / f"envs/{env}.yaml").read_text())
    deps = [d for d in spec["dependencies"] if isinstance(d, str)]
    names = {CONDA_TO_PYPI.get(_name(d), _name(d)) for d in deps} - CONDA_ONLY
    assert names == _pyproject()
    unpinned = [d for d in deps if not re.search(r"=\d", d)]
    assert not unpinned, f"envs/{env}.yaml: unpinned {unpinned}"


def test_the_gpu_env_has_cuda_torch_and_faiss_gpu():
    deps = yaml.safe_load((REPO / "envs/gpu.yaml").read_text())["dependencies"]
    assert any(d.startswith("pytorch=") and "cuda" in d for d in deps)
    assert any(d.startswith("faiss-gpu=") for d in deps) and not any(d.startswith("faiss-cpu") for d in deps)


def test_rules_name_an_env_and_the_embed_rule_the_gpu_one():
    rules = (REPO / "workflow/rules").glob("*.smk")
    for path in rules:
        text = path.read_text()
        for block in re.split(r"\n(?=(?:rule|checkpoint)[ :])", text)[1:]:
            name = block.split(":")[0].split()[1] if not block.startswith("rule:") else block.split('"')[1]
            assert "conda:" in block, f"{path.name}: rule {name} has no conda env"
            if name in ("embed", "embed_pack"):
                assert '"../../envs/gpu.yaml"' in block and "gpu=1" in block
            if name == "train_index_gpu":  # named so with index.gpu: true, with the env that matches
                assert '"../../envs/gpu.yaml" if config["index"]["gpu"] else "../../envs/cpu.yaml"' in block
