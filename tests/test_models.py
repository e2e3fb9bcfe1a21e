import numpy as np
import json
import shutil

import pytest

from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec, check_remote_code, fingerprint, load_model, resolve
from genembed.encode.plan import RunPlan
from genembed.encode.tokenize import TokenizerSpec


def test_a_local_folder_is_planned_with_fingerprint_and_limits(tiny_bert, tmp_path):
    d = RunPlan.make(ModelSpec(str(tiny_bert)), TokenizerSpec("hf"), {})
    assert d.folder == str(tiny_bert.resolve())
    assert d.max_tokens == 512 and d.hidden_size == 32 and d.model_type == "bert"
    assert len(d.fingerprint) == 64
    d.write(tmp_path / "plan.json")
    assert RunPlan.read(tmp_path / "plan.json") == d


def test_fingerprint_changes_with_the_weights_not_with_the_model_card(tmp_path, tiny_bert):
    copy = tmp_path / "m"
    shutil.copytree(tiny_bert, copy)
    before = fingerprint(copy)
    (copy / "README.md").write_text("notes")
    assert fingerprint(copy) == before
    weights = copy / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-1] ^= 1
    weights.write_bytes(bytes(data))
    assert fingerprint(copy) != before


def test_missing_model_folder_is_a_clear_error(tmp_path):
    with pytest.raises(GenembedError, match="model folder not found"):
        resolve(ModelSpec(str(tmp_path / "nope")))


def test_model_folder_without_config_is_refused(tmp_path):
    (tmp_path / "m").mkdir()
    with pytest.raises(GenembedError, match="no config.json"):
        RunPlan.make(ModelSpec(str(tmp_path / "m")), TokenizerSpec("hf"), {})


def test_hub_id_loads_from_the_local_hub_cache_offline(tmp_path, tiny_bert, monkeypatch):
    """A hub id resolves through huggingface_hub's cache layout (as after a download), offline."""
    commit = "0123456789abcdef0123456789abcdef01234567"
    repo = tmp_path / "hub" / "models--genembed--tiny-bert"
    shutil.copytree(tiny_bert, repo / "snapshots" / commit)
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(commit)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub.constants as c

    monkeypatch.setattr(c, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(c, "HF_HUB_OFFLINE", True)
    folder = resolve(ModelSpec("genembed/tiny-bert"))
    assert folder.name == commit
    assert load_model(folder, ModelSpec("genembed/tiny-bert")).config.hidden_size == 32
    with pytest.raises(GenembedError, match="cannot fetch model from the hub"):
        resolve(ModelSpec("genembed/not-cached"))


def test_custom_code_is_refused_unless_the_config_opts_in(tmp_path, tiny_bert):
    copy = tmp_path / "custom"
    shutil.copytree(tiny_bert, copy)
    cfg = json.loads((copy / "config.json").read_text())
    cfg["auto_map"] = {"AutoModel": "modeling_dna.DnaModel"}
    (copy / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(GenembedError, match="trust_remote_code: true"):
        check_remote_code(copy, ModelSpec(str(copy)))
    check_remote_code(copy, ModelSpec(str(copy), trust_remote_code=True))


def test_custom_code_model_registered_as_masked_lm_loads_its_encoder(custom_code_model):
    from genembed.encode.embed import EmbedSettings, Embedder

    spec = ModelSpec(str(custom_code_model), trust_remote_code=True)
    model = load_model(custom_code_model, spec)
    assert type(model).__name__ == "BertModel"  # the base encoder of the custom masked-LM class
    vectors = Embedder(spec, EmbedSettings()).embed_rows([np.array([2, 10, 11, 12, 3], dtype=np.int32)])
    assert vectors.shape == (1, 32) and np.isfinite(vectors).all()
    with pytest.raises(GenembedError, match="ships its own code"):
        load_model(custom_code_model, ModelSpec(str(custom_code_model)))
