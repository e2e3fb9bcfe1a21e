"""Untrusted content: model code runs only when the config opts in (tests/test_models.py), weights
never unpickle arbitrary objects, a traced query encoder is loaded only if genembed wrote it
(tests/test_index.py), and the query CLI writes nothing but its output."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from genembed.errors import GenembedError


class _Payload:
    """Pickles to a call that creates ``marker`` when unpickled."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return os.mkdir, (self.marker,)


def test_pickled_weights_with_code_are_refused_and_the_code_never_runs(tmp_path, tiny_bert):
    import torch

    from genembed.encode.models import ModelSpec, load_model

    folder = tmp_path / "model"
    shutil.copytree(tiny_bert, folder)
    (folder / "model.safetensors").unlink()
    marker = tmp_path / "payload-ran"
    torch.save({"bert.embeddings.word_embeddings.weight": _Payload(marker)}, folder / "pytorch_model.bin")
    with pytest.raises(GenembedError, match="cannot load model"):
        load_model(folder, ModelSpec(str(folder)))
    assert not marker.exists()


def _files(root: Path) -> dict[str, float]:
    return {str(p.relative_to(root)): p.stat().st_mtime for p in root.rglob("*") if p.is_file()}


def test_the_query_cli_writes_only_its_output_file(tmp_path, built_index):
    index = tmp_path / "index"
    shutil.copytree(built_index["dir"], index)
    home, work = tmp_path / "home", tmp_path / "work"
    home.mkdir()
    work.mkdir()
    before = _files(tmp_path)
    env = dict(os.environ, HOME=str(home), XDG_CACHE_HOME=str(home / ".cache"), HF_HOME=str(home / "hf"),
               TMPDIR=str(work))
    for fmt, name in (("tsv", "hits.tsv"), ("parquet", "hits.parquet")):
        subprocess.run([sys.executable, "-m", "genembed.run.cli", "query", "--index", str(index), "--region",
                        "ecoli:NC_000913.3:5000-6000", "--format", fmt, "--out", str(work / name)],
                       cwd=work, env=env, check=True, capture_output=True)
    after = _files(tmp_path)
    assert set(after) - set(before) == {"work/hits.tsv", "work/hits.parquet"}
    assert {k: v for k, v in after.items() if k in before} == before  # nothing else touched
