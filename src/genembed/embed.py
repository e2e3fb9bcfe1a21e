"""Run a model over tokenised windows: token-budget batches, masked pooling, float16 output."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Sequence

import numpy as np

from .errors import GenembedError
from .models import ModelSpec, load_model, load_tokenizer, resolve

log = logging.getLogger(__name__)
POOLINGS = ("mean", "cls")


@dataclass(frozen=True)
class EmbedSettings:
    """Pooling (``mean`` over real tokens, or ``cls``), layer (negative counts from the top),
    tokens per batch, precision (``auto``, ``fp32``, ``bf16``, ``fp16``) and device."""

    pooling: str = "mean"
    layer: int = -1
    token_budget: int = 16384
    precision: str = "auto"
    device: str = "auto"

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "EmbedSettings":
        s = cls(cfg.get("pooling", "mean"), int(cfg.get("layer", -1)), int(cfg.get("token_budget", 16384)),
                cfg.get("precision", "auto"), cfg.get("device", "auto"))
        if s.pooling not in POOLINGS:
            raise GenembedError(f"embed.pooling must be one of {POOLINGS}, not {s.pooling!r}")
        return s


def pick_device(name: str = "auto") -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return name


def pick_dtype(precision: str, device: str):
    import torch

    if precision == "auto":
        precision = "bf16" if device.startswith("cuda") else "fp32"
    return {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}[precision]


def token_batches(lengths: np.ndarray, budget: int) -> Iterator[np.ndarray]:
    """Row indices in batches, longest first, so that rows x longest length <= budget."""
    order = np.argsort(-lengths, kind="stable")
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        size = max(1, budget // max(longest, 1))
        yield order[i : i + size]
        i += size


class Embedder:
    """A loaded model plus the pooling settings; turns token rows into pooled vectors."""

    def __init__(self, spec: ModelSpec, settings: EmbedSettings):
        import torch

        self.settings = settings
        self.device = pick_device(settings.device)
        self.dtype = pick_dtype(settings.precision, self.device)
        folder = resolve(spec)
        self.tokenizer = load_tokenizer(folder, spec)
        self.model = load_model(folder, spec, self.dtype).to(self.device)
        self.pad_id = self.tokenizer.pad_token_id if self.tokenizer.pad_token_id is not None else 0
        names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")
        special = {getattr(self.tokenizer, n, None) for n in names} - {None}
        self.special = torch.tensor(sorted(special), dtype=torch.long, device=self.device)
        self.hidden_size = int(self.model.config.hidden_size)
        layers = int(getattr(self.model.config, "num_hidden_layers", 0) or 0)
        if layers and not -(layers + 1) <= settings.layer <= layers:
            raise GenembedError(f"embed.layer {settings.layer} is out of range for a model with {layers} layers"
                                f" (use -{layers + 1}..{layers}; -1 is the last)")
        if settings.pooling == "cls" and self.tokenizer.cls_token_id is None and self.tokenizer.bos_token_id is None:
            raise GenembedError(f"{spec.source}: pooling 'cls' needs a start token, and this tokenizer has none;"
                                " use pooling: mean")

    def embed_rows(self, rows: Sequence[np.ndarray]) -> np.ndarray:
        """Pooled float32 vectors ``[len(rows), d]`` for token rows (ragged lengths allowed)."""
        import torch

        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        out = np.zeros((len(rows), self.hidden_size), dtype=np.float32)
        with torch.inference_mode():
            for batch in token_batches(lengths, self.settings.token_budget):
                width = int(lengths[batch].max())
                ids = np.full((len(batch), width), self.pad_id, dtype=np.int64)
                for j, row in enumerate(batch):
                    ids[j, : lengths[row]] = rows[row]
                out[batch] = self._forward(torch.from_numpy(ids), torch.from_numpy(lengths[batch]))
        return out

    def _forward(self, ids, lengths) -> np.ndarray:
        import torch

        ids = ids.to(self.device, non_blocking=True)
        attention = (torch.arange(ids.shape[1], device=self.device)[None, :] < lengths.to(self.device)[:, None])
        layer = self.settings.layer
        result = self.model(input_ids=ids, attention_mask=attention.long(), output_hidden_states=layer != -1)
        if isinstance(result, tuple):  # custom code returning plain tuples (DNABERT-2)
            if layer != -1:
                raise GenembedError("this model returns no hidden states per layer; use embed.layer: -1")
            hidden = result[0]
        else:
            hidden = result.last_hidden_state if layer == -1 else result.hidden_states[layer]
        hidden = hidden.float()  # pool in fp32 whatever the compute precision
        if self.settings.pooling == "cls":
            pooled = hidden[:, 0]
        else:
            real = (attention & ~torch.isin(ids, self.special)).float()[..., None]
            pooled = (hidden * real).sum(1) / real.sum(1).clamp(min=1)
        return pooled.cpu().numpy()


def embed_tokens(embedder: Embedder, tokens: np.ndarray, offsets: np.ndarray,
                 chunk: int = 4096) -> np.ndarray:
    """Float16 embeddings of a shard's token rows, computed in chunks, with a rate in the log."""
    n = len(offsets) - 1
    out = np.zeros((n, embedder.hidden_size), dtype=np.float16)
    started = time.monotonic()
    for lo in range(0, n, chunk):
        hi = min(n, lo + chunk)
        rows = [np.asarray(tokens[offsets[i] : offsets[i + 1]]) for i in range(lo, hi)]
        out[lo:hi] = embedder.embed_rows(rows)
        rate = hi / max(time.monotonic() - started, 1e-9)
        log.info("embedded %d/%d windows (%.1f windows/s)", hi, n, rate)
    return out


def embed_shard(windows: str | Path, tokens: str | Path, offsets: str | Path, embedder: Embedder,
                model: dict[str, Any], tokenizer: str, window_size: int, window_stride: int, out: str | Path) -> int:
    """Stage: embed one shard's tokens and write the HDF5 shard (atomically)."""
    import polars as pl

    from .store import write_shard
    from .tokenize import read_tokens

    ids = pl.read_parquet(windows, columns=["window_id"])["window_id"].to_numpy()
    flat, offs = read_tokens(tokens, offsets)
    if len(offs) - 1 != len(ids):
        raise GenembedError(f"{tokens}: {len(offs) - 1} token rows but {len(ids)} windows in {windows}")
    vectors = embed_tokens(embedder, flat, offs)
    s = embedder.settings
    write_shard(out, vectors, ids, {
        "model": model["source"], "model_fingerprint": model["fingerprint"], "revision": model.get("revision"),
        "tokenizer": tokenizer, "pooling": s.pooling, "layer": s.layer, "precision": str(embedder.dtype).removeprefix("torch."),
        "window_size": window_size, "window_stride": window_stride, "dim": embedder.hidden_size,
    })
    return len(ids)
