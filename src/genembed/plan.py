"""What a run will do, fixed once before any job: the model's description plus the windows that
fit it (the workflow's ``results/model/model.json``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .models import ModelSpec, describe, load_tokenizer, resolve
from .tokenize import HFTokenizer, KmerTokenizer, TokenizerSpec, make_tokenizer
from .windows import plan_windows


def plan_run(spec: ModelSpec, tokenizer: TokenizerSpec, windows: dict[str, Any]) -> dict[str, Any]:
    """The model description with the tokenizer and the resolved, checked window plan."""
    model = describe(spec)
    tok = make_tokenizer(tokenizer, load_tokenizer(resolve(spec), spec))
    model["tokenizer"] = tokenizer.describe()
    limit = model["max_tokens"]
    model["windows"] = plan_windows(windows, tok.max_bp(limit), lambda n: tok.fits(n, limit), spec.source, limit)
    return model


def plan_embedder(plan: dict[str, Any], model: dict[str, Any], embed: dict[str, Any]):
    """``sequences -> vectors`` made as the run's shards are: the model folder and tokenizer the plan
    (``model.json``) names, the config's ``model`` (revision, remote code) and ``embed`` sections."""
    from .embed import EmbedSettings, model_embedder

    spec = ModelSpec.from_config({**model, "path": plan["folder"]})
    return model_embedder(spec, TokenizerSpec.parse(plan["tokenizer"]), EmbedSettings.from_config(embed))


def plan_tokenizer(plan: dict[str, Any], model: dict[str, Any]) -> KmerTokenizer | HFTokenizer:
    """The tokenizer a run's plan (``model.json``) names, over the model folder it resolved;
    ``model`` is the config's ``model`` section (revision, remote code)."""
    spec = ModelSpec.from_config({**model, "path": plan["folder"]})
    return make_tokenizer(TokenizerSpec.parse(plan["tokenizer"]), load_tokenizer(Path(plan["folder"]), spec))
