"""Find, fingerprint and load Hugging Face models (hub ids or local folders)."""

from __future__ import annotations

import hashlib
import json
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from genembed.errors import GenembedError

_SKIP_SUFFIXES = (".md", ".lock", ".metadata")


@dataclass(frozen=True)
class ModelSpec:
    """What the config names: a local folder or hub id, a revision, and the remote-code opt-in."""

    source: str
    revision: str | None = None
    trust_remote_code: bool = False

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "ModelSpec":
        return cls(str(cfg["path"]), cfg.get("revision"), bool(cfg.get("trust_remote_code", False)))


def resolve(spec: ModelSpec) -> Path:
    """The local folder holding the model: the folder itself, or the hub snapshot (cached)."""
    path = Path(spec.source).expanduser()
    if path.is_dir():
        return path.resolve()
    if path.exists() or spec.source.startswith((".", "/", "~")) or spec.source.count("/") != 1:
        raise GenembedError(f"{spec.source}: model folder not found (nor a hub id of the form org/name)")
    from huggingface_hub import snapshot_download

    try:
        return Path(snapshot_download(spec.source, revision=spec.revision))
    except Exception as exc:  # offline, unknown repo, auth: all end the same way for a user
        raise GenembedError(f"{spec.source}: cannot fetch model from the hub ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def fingerprint(folder: str | os.PathLike) -> str:
    """sha256 over the model folder's files (names and contents, docs excluded)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    files = sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith(".") and p.suffix not in _SKIP_SUFFIXES)
    for file in files:
        digest.update(str(file.relative_to(folder)).encode() + b"\0")
        with open(file, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def read_config(folder: Path) -> dict[str, Any]:
    cfg = folder / "config.json"
    if not cfg.is_file():
        raise GenembedError(f"{folder}: not a Hugging Face model folder (no config.json)")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as exc:
        raise GenembedError(f"{cfg}: invalid JSON ({exc})") from None


def check_remote_code(folder: Path, spec: ModelSpec) -> None:
    """Refuse a model that ships its own code unless the config opts in."""
    auto_map = read_config(folder).get("auto_map")
    if auto_map and not spec.trust_remote_code:
        raise GenembedError(
            f"{spec.source}: the model ships its own code ({', '.join(sorted(set(map(str, auto_map.values()))))});"
            " set model.trust_remote_code: true to run it"
        )


def _quiet_transformers() -> None:
    """No load reports or progress bars from transformers; genembed logs what matters."""
    from transformers.utils import logging as hf_logging

    hf_logging.set_verbosity_error()
    hf_logging.disable_progress_bar()


def load_tokenizer(folder: Path, spec: ModelSpec):
    """The model's own tokenizer through AutoTokenizer."""
    from transformers import AutoTokenizer

    _quiet_transformers()
    check_remote_code(folder, spec)
    try:
        return AutoTokenizer.from_pretrained(folder, trust_remote_code=spec.trust_remote_code)
    except Exception as exc:
        raise GenembedError(f"{folder}: cannot load tokenizer ({type(exc).__name__}: {exc})".splitlines()[0]) from None


def load_model(folder: Path, spec: ModelSpec, dtype: Any = None):
    """The encoder, in eval mode, with SDPA attention where supported.

    Custom-code models that register only a masked-LM class (Nucleotide Transformer v2 does) are
    loaded through AutoModelForMaskedLM and their base encoder is returned.
    """
    import torch
    from transformers import AutoModel, AutoModelForMaskedLM

    from genembed.encode import convnet  # noqa: F401  (registers genembed's own architecture with the Auto classes)

    _quiet_transformers()
    check_remote_code(folder, spec)
    check_weights(folder)
    auto_map = read_config(folder).get("auto_map") or {}
    masked_lm_only = bool(auto_map) and "AutoModel" not in auto_map and "AutoModelForMaskedLM" in auto_map
    loader = AutoModelForMaskedLM if masked_lm_only else AutoModel
    kwargs: dict[str, Any] = {"trust_remote_code": spec.trust_remote_code, "dtype": dtype or torch.float32,
                              "output_loading_info": True}
    try:
        try:
            model, info = loader.from_pretrained(folder, attn_implementation="sdpa", **kwargs)
        except (ValueError, ImportError):
            model, info = loader.from_pretrained(folder, **kwargs)
    except Exception as exc:
        if "ignore_mismatched_sizes" in str(exc):  # the report transformers refers to was logged, not raised: make it
            raise GenembedError(_size_mismatch(folder, loader, kwargs)) from None
        raise GenembedError(f"{folder}: cannot load model ({type(exc).__name__}: {exc})".splitlines()[0]) from None
    check_loaded_keys(folder, info)
    with torch.no_grad():
        broken = [name for name, p in model.named_parameters() if p.is_floating_point() and not torch.isfinite(p).all()]
    if broken:
        raise GenembedError(f"{folder}: {len(broken)} weight tensors hold NaN or infinity ({', '.join(broken[:3])}"
                            f"{' ...' if len(broken) > 3 else ''}); the weights file is damaged: fetch it again")
    if masked_lm_only:
        model = model.base_model
    return model.eval()


# weights a base encoder may lack (it pools itself) or a checkpoint may hold beyond it (a
# pre-training head): anything else missing would run randomly initialised, anything else unexpected
# belongs to another architecture
UNUSED_PARTS = re.compile(r"(^|\.)pooler\.")
HEAD_PARTS = re.compile(r"^(cls|lm_head|mlm_head|predictions|head|heads|classifier|decoder|qa_outputs)\.|(^|\.)pooler\.")


def _size_mismatch(folder: Path, loader: Any, kwargs: dict[str, Any]) -> str:
    """One line naming the weights whose shapes config.json contradicts."""
    try:
        _, info = loader.from_pretrained(folder, ignore_mismatched_sizes=True, **kwargs)
        wrong = sorted(info.get("mismatched_keys", ()), key=lambda m: m[0])
    except Exception:  # noqa: BLE001  (the first error stands)
        wrong = []
    if not wrong:
        return f"{folder}: config.json does not match the weights' shapes"
    key, stored, wanted = wrong[0]
    more = f" (and {len(wrong) - 1} more)" if len(wrong) > 1 else ""
    return (f"{folder}: config.json does not match the weights: {key} is {list(stored)} in the weights file but"
            f" {list(wanted)} by the config{more}; fix config.json or fetch the model again")


def check_loaded_keys(folder: Path, info: dict[str, Any]) -> None:
    """Refuse a model whose weights file lacks some of its layers' weights (they would run randomly
    initialised) or holds weights it has no layer for, naming a few of them."""
    missing = sorted(k for k in info.get("missing_keys", ()) if not UNUSED_PARTS.search(k))
    unexpected = sorted(k for k in info.get("unexpected_keys", ()) if not HEAD_PARTS.search(k))
    for keys, what in ((missing, "lacks weights the model needs"), (unexpected, "holds weights the model has no layer for")):
        if keys:
            shown = ", ".join(keys[:3]) + (f" and {len(keys) - 3} more" if len(keys) > 3 else "")
            raise GenembedError(f"{folder}: the weights file {what} ({shown}); it belongs to another model or is"
                                " incomplete: fetch it again")


def check_weights(folder: Path) -> None:
    """Refuse truncated or garbled safetensors files, naming the file (a download cut short is the
    usual cause): the header must parse and the file must be exactly as long as it says."""
    for path in sorted(Path(folder).glob("*.safetensors")):
        try:
            with open(path, "rb") as fh:
                n = int.from_bytes(fh.read(8), "little")
                header = json.loads(fh.read(n))
            end = max((v["data_offsets"][1] for k, v in header.items() if k != "__metadata__"), default=0)
            ok = path.stat().st_size == 8 + n + end
        except (ValueError, OSError, KeyError, TypeError, AttributeError):
            ok = False
        if not ok:
            raise GenembedError(f"{path}: corrupt or unreadable weights (truncated or not safetensors); fetch it again")


def max_tokens(folder: Path, tokenizer: Any) -> int:
    """The most tokens (special tokens included) one input may have."""
    cfg = read_config(folder)
    limits = []
    if cfg.get("max_position_embeddings"):
        positions = int(cfg["max_position_embeddings"])
        if cfg.get("model_type") in {"esm", "roberta", "xlm-roberta"}:
            positions -= int(cfg.get("pad_token_id") or 0) + 1  # position ids start after padding_idx
        limits.append(positions)
    if 0 < getattr(tokenizer, "model_max_length", 0) < 1_000_000:
        limits.append(int(tokenizer.model_max_length))
    return min(limits) if limits else 1_000_000
