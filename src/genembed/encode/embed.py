"""Run a model over tokenised windows: length-sorted token-budget batches, exact masked pooling,
reverse-complement averaging, bf16/fp16 where the hardware has it, float16 HDF5 output.

Token rows of a shard embedded with ``strands: average`` hold the forward rows first and the
reverse-complement rows after them (see :func:`genembed.encode.tokenize.tokenize_shard`).
"""

from __future__ import annotations

import gc
import inspect
import logging
import queue
import sys
import threading
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any, Callable, Iterable, Iterator, Sequence

import numpy as np

from genembed.encode.device import is_out_of_memory, pick_device, pick_dtype
from genembed.encode.memory import keep_freed_memory
from genembed.errors import GenembedError
from genembed.encode.models import ModelSpec, load_model, load_tokenizer, resolve

if TYPE_CHECKING:
    from genembed.encode.plan import RunPlan

log = logging.getLogger(__name__)
POOLINGS = ("mean", "cls", "max")
STRANDS = ("forward", "average")
PRECISIONS = ("auto", "fp32", "bf16", "fp16")


@dataclass(frozen=True)
class EmbedSettings:
    """Pooling (``mean`` or ``max`` over real tokens, or ``cls``), layer (negative counts from the
    top), strands (``forward``, or ``average`` of both strands), tokens per batch, precision
    (``auto``, ``fp32``, ``bf16``, ``fp16``) and device."""

    pooling: str = "mean"
    layer: int = -1
    token_budget: int = 16384
    precision: str = "auto"
    device: str = "auto"
    strands: str = "forward"

    def __post_init__(self) -> None:
        for key, value, allowed in (("pooling", self.pooling, POOLINGS), ("strands", self.strands, STRANDS),
                                    ("precision", self.precision, PRECISIONS)):
            if value not in allowed:
                raise GenembedError(f"embed.{key} must be one of {allowed}, not {value!r}")
        if self.token_budget < 1:
            raise GenembedError(f"embed.token_budget must be positive, not {self.token_budget}")

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "EmbedSettings":
        """From the config's ``embed`` section; absent keys take the defaults above (stated once)."""
        given = {f.name: cfg[f.name] for f in fields(cls) if f.name in cfg}
        return cls(**{k: int(v) if k in ("layer", "token_budget") else v for k, v in given.items()})


def token_batches(lengths: np.ndarray, budget: int, equal_lengths: bool = False) -> Iterator[np.ndarray]:
    """Row indices in batches, longest first, so that rows x longest length <= budget.

    With ``equal_lengths`` every batch holds rows of one length only (models without an
    attention mask must never see padding).
    """
    order = np.argsort(-np.asarray(lengths), kind="stable")
    i = 0
    while i < len(order):
        longest = int(lengths[order[i]])
        end = min(len(order), i + max(1, budget // max(longest, 1)))
        if equal_lengths:
            end = i + int(np.searchsorted(-lengths[order[i:end]], -longest, side="right"))
        yield order[i:end]
        i = end


def background(items: Iterable[Any], depth: int = 2) -> Iterator[Any]:
    """Iterate ``items`` produced by a background thread, up to ``depth`` ahead."""
    q: queue.Queue = queue.Queue(maxsize=depth)
    done = object()

    def produce() -> None:
        try:
            for item in items:
                q.put(item)
        except BaseException as exc:  # handed to the consumer
            q.put(exc)
        q.put(done)

    threading.Thread(target=produce, daemon=True).start()
    while (item := q.get()) is not done:
        if isinstance(item, BaseException):
            raise item
        yield item


def starts_with_special(tokenizer: Any) -> bool:
    """True when the tokenizer puts a CLS/BOS token first (HyenaDNA's adds only an end token)."""
    first = tokenizer("ACGTACGTACGT", add_special_tokens=True)["input_ids"][0]
    return first in {tokenizer.cls_token_id, tokenizer.bos_token_id} - {None}


def _accepts(fn: Callable, name: str) -> bool:
    params = inspect.signature(fn).parameters
    return name in params or any(p.kind is p.VAR_KEYWORD for p in params.values())


def special_token_ids(tokenizer: Any) -> list[int]:
    """Ids of the tokenizer's special tokens (start, end, padding, mask): never pooled."""
    names = ("cls_token_id", "sep_token_id", "bos_token_id", "eos_token_id", "pad_token_id", "mask_token_id")
    return sorted({getattr(tokenizer, n, None) for n in names} - {None})


def pad_rows(rows: Sequence[np.ndarray], pad_id: int) -> np.ndarray:
    """Token rows as one int64 array, padded on the right to the longest row."""
    ids = np.full((len(rows), max((len(r) for r in rows), default=0)), pad_id, dtype=np.int64)
    for j, row in enumerate(rows):
        ids[j, : len(row)] = row
    return ids


def mean_pool(hidden, ids, real, special):
    """Mean of ``hidden`` ([rows, positions, d]) over real (not padding) positions holding no
    special token, in fp32."""
    import torch

    keep = (real & ~torch.isin(ids, special))[..., None].float()
    return (hidden.float() * keep).sum(1) / keep.sum(1).clamp(min=1)


class Embedder:
    """A loaded model plus the pooling settings; turns token rows into pooled vectors."""

    source: str = "the traced encoder"  # what errors name (a loaded model: its folder or hub id)
    vocab_size: int | None = None  # token ids must stay below it (a traced encoder: checked at export)

    @classmethod
    def for_plan(cls, plan: "RunPlan", **runtime: Any) -> "Embedder":
        """The run's model loaded with its embed settings (``runtime``: token_budget, device)."""
        return cls(plan.model, replace(plan.embed, **runtime))

    def __init__(self, spec: ModelSpec, settings: EmbedSettings):
        keep_freed_memory()
        device = pick_device(settings.device)
        dtype = pick_dtype(settings.precision, device)
        folder = resolve(spec)
        self.tokenizer = load_tokenizer(folder, spec)
        model = load_model(folder, spec, dtype).to(device)
        disable_triton_flash_attention(model)
        self._attach(model, settings, device, dtype, self.tokenizer.pad_token_id or 0, special_token_ids(self.tokenizer),
                     _accepts(model.forward, "attention_mask"), _accepts(model.forward, "output_hidden_states"))
        cfg = model.config
        self.source, self.vocab_size = spec.source, getattr(cfg, "vocab_size", None)
        layers = int(getattr(cfg, "num_hidden_layers", 0) or getattr(cfg, "n_layer", 0) or 0)
        if layers and not -(layers + 1) <= settings.layer <= layers:
            raise GenembedError(f"embed.layer {settings.layer} is out of range for a model with {layers} layers"
                                f" (use -{layers + 1}..{layers}; -1 is the last)")
        if settings.layer != -1 and not self.takes_hidden_states:
            raise GenembedError(f"{spec.source}: the model returns no hidden states per layer; use embed.layer: -1")
        if settings.pooling == "cls" and not starts_with_special(self.tokenizer):
            raise GenembedError(f"{spec.source}: pooling 'cls' needs a start token, and this tokenizer adds none;"
                                " use pooling: mean")
        self.hidden_size = self._probe(lambda: load_model(folder, spec).to(device))
        gc.freeze()  # the millions of objects of torch, transformers and the model are never garbage: not scanned again
        log.info("model %s on %s in %s; attention mask: %s", spec.source, self.device, self.precision,
                 "yes" if self.takes_mask else "no (equal-length batches)")

    def _attach(self, model: Any, settings: EmbedSettings, device: str, dtype: Any, pad_id: int,
                special: Sequence[int], takes_mask: bool, takes_hidden_states: bool) -> None:
        """The state every embedder has, whether it loaded the model or a traced copy of it."""
        import torch

        self.model, self.settings, self.device, self.dtype = model, settings, device, dtype
        self.budget, self.pad_id = settings.token_budget, int(pad_id)
        self.special = torch.tensor(list(special), dtype=torch.long, device=device)
        self.takes_mask, self.takes_hidden_states = takes_mask, takes_hidden_states

    def _output_width(self) -> int:
        """Width of the pooled vectors, read off one forward pass (not the config: Caduceus-PS
        returns 2 x d_model channels)."""
        import torch

        ids = torch.tensor([self.tokenizer("ACGTACGTACGTA")["input_ids"]], dtype=torch.long)
        with torch.inference_mode():
            vector = self._forward(ids, torch.tensor([ids.shape[1]]))
        if self.dtype != torch.float32 and not np.isfinite(vector).all():
            raise FloatingPointError("non-finite output")
        return int(vector.shape[1])

    def _probe(self, reload: Callable[[], Any]) -> int:
        """The output width, from one forward pass in the chosen precision; a model that cannot run
        in bf16/fp16 (FFT convolutions have no bf16 kernel, fp16 ones only at power-of-two lengths)
        or overflows there is loaded again (``reload``) in fp32 and run so, with a warning."""
        import torch

        try:
            return self._output_width()
        except (RuntimeError, FloatingPointError) as exc:
            if self.dtype == torch.float32 or is_out_of_memory(exc):
                raise
            log.warning("%s fails in %s (%s): running it in float32", type(self.model).__name__, self.precision,
                        str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
        self.model, self.dtype = reload(), torch.float32
        return self._output_width()

    @classmethod
    def from_traced(cls, module: Any, info: dict[str, Any], settings: EmbedSettings) -> "Embedder":
        """An embedder over a traced (TorchScript) encoder saved by :mod:`genembed.search.export`: no
        transformers import, on the CPU, with the token ids and limits the export recorded."""
        import torch

        self = cls.__new__(cls)
        self._attach(_Traced(module, info.get("receptive_field")), settings, "cpu", getattr(torch, info["dtype"]),
                     info["pad_id"], info["special"], bool(info["takes_mask"]), True)
        self.tokenizer, self.hidden_size = None, int(info["dim"])
        return self

    @property
    def precision(self) -> str:
        return str(self.dtype).removeprefix("torch.")

    def embed_rows(self, rows: Sequence[np.ndarray], progress: Callable[[int], Any] | None = None) -> np.ndarray:
        """Pooled float32 vectors ``[len(rows), d]`` for token rows (ragged lengths allowed)."""
        import torch

        lengths = np.array([len(r) for r in rows], dtype=np.int64)
        top = max((int(r.max()) for r in rows if len(r)), default=-1)
        if isinstance(self.vocab_size, int) and top >= self.vocab_size:
            raise GenembedError(f"{self.source}: token id {top} exceeds the model's vocab_size {self.vocab_size}"
                                " (its tokenizer and its weights do not belong together)")
        out = np.zeros((len(rows), self.hidden_size), dtype=np.float32)
        batches = list(token_batches(lengths, self.budget, not self.takes_mask))
        with torch.inference_mode():
            for batch, ids, lens in background(self._padded(rows, lengths, b) for b in batches):
                out[batch] = self._run(rows, lengths, batch, ids, lens)
                if progress:
                    progress(len(batch))
        return out

    def _padded(self, rows: Sequence[np.ndarray], lengths: np.ndarray, batch: np.ndarray):
        """A batch as padded int64 ids (pinned for a fast copy to a GPU) and its lengths."""
        import torch

        ids_t, lens_t = torch.from_numpy(pad_rows([rows[r] for r in batch], self.pad_id)), torch.from_numpy(lengths[batch])
        if self.device.startswith("cuda"):
            ids_t, lens_t = ids_t.pin_memory(), lens_t.pin_memory()
        return batch, ids_t, lens_t

    def _run(self, rows, lengths, batch, ids, lens) -> np.ndarray:
        """Forward one batch; on GPU out-of-memory halve the token budget and retry it in parts."""
        import torch

        if len(batch) > 1 and len(batch) * ids.shape[1] > self.budget:  # planned before a back-off
            return self._retry(rows, lengths, batch)
        try:
            return self._forward(ids, lens)
        except RuntimeError as exc:  # torch's OutOfMemoryError is one
            if not is_out_of_memory(exc):
                raise
            # handled outside the except block, so the failed batch's tensors can be freed
        if self.device.startswith("cuda"):
            torch.cuda.empty_cache()
        width = ids.shape[1]
        if len(batch) == 1:
            raise GenembedError(f"out of memory on a single window of {width} tokens; use smaller windows"
                                " or a larger device")
        self.budget = max(width, min(self.budget, len(batch) * width) // 2)
        log.warning("out of memory on %d windows x %d tokens: token budget halved to %d, retrying",
                    len(batch), width, self.budget)
        return self._retry(rows, lengths, batch)

    def _retry(self, rows, lengths, batch) -> np.ndarray:
        """A batch again, split to fit the reduced budget."""
        out = np.zeros((len(batch), self.hidden_size), dtype=np.float32)
        for part in token_batches(lengths[batch], self.budget, not self.takes_mask):
            sub = batch[part]
            out[part] = self._run(rows, lengths, sub, *self._padded(rows, lengths, sub)[1:])
        return out

    def encode(self, ids, attention_mask=None):
        """The pooled layer's hidden states of a batch (the mask is passed only to models that take one)."""
        kwargs: dict[str, Any] = {}
        if self.takes_mask and attention_mask is not None:
            kwargs["attention_mask"] = attention_mask
        if self.settings.layer != -1:
            kwargs["output_hidden_states"] = True
        return _hidden(self.model(input_ids=ids, **kwargs), self.settings.layer)

    def _forward(self, ids, lengths) -> np.ndarray:
        import torch

        padded = bool((lengths < ids.shape[1]).any())  # decided on the host: no device sync
        ids = ids.to(self.device, non_blocking=True)
        lengths = lengths.to(self.device, non_blocking=True)
        real = torch.arange(ids.shape[1], device=self.device)[None, :] < lengths[:, None]
        # a batch without padding needs no mask (faster kernels); pool in fp32 whatever the compute precision
        hidden = self.encode(ids, real.long() if padded else None).float()
        if self.settings.pooling == "cls":
            return hidden[:, 0].cpu().numpy()
        if self.settings.pooling == "max":
            keep = (real & ~torch.isin(ids, self.special))[..., None]
            pooled = hidden.masked_fill(~keep, float("-inf")).amax(1)
            return torch.where(keep.any(1), pooled, 0.0).cpu().numpy()
        return mean_pool(hidden, ids, real, self.special).cpu().numpy()


def disable_triton_flash_attention(model: Any) -> bool:
    """Switch off the Triton flash-attention kernel DNABERT-2's code bundles (``flash_attn_triton.py``,
    written for Triton 2: on CUDA builds of torch, which ship Triton 3, it fails to compile), so its
    own standard attention runs. Returns True when a kernel was switched off."""
    package = type(model).__module__.rpartition(".")[0]
    hit = False
    for name, module in list(sys.modules.items()):
        if module is not None and (name == type(model).__module__ or (package and name.startswith(package + "."))) \
                and getattr(module, "flash_attn_qkvpacked_func", None) is not None:
            module.flash_attn_qkvpacked_func = None
            hit = True
    if hit:
        log.info("%s: its Triton flash attention is switched off (it needs Triton 2); standard attention runs",
                 type(model).__name__)
    return hit


class _Traced:
    """Calls a traced encoder ``(input_ids, attention_mask) -> hidden states`` as a model is called;
    ``receptive_field`` is the traced model's, where the export recorded one (see :mod:`genembed.encode.scan`).
    An export that also traced ``plain`` (no mask: rows without padding take the faster path) and
    ``edge_left``/``edge_right`` (the model's ``edge_states`` at its reach) is called through them."""

    def __init__(self, module: Any, receptive_field: int | None = None):
        self.module = module
        self.receptive_field = receptive_field
        if receptive_field and hasattr(module, "edge_left") and hasattr(module, "edge_right"):
            self.edge_states = self._edge_states

    def __call__(self, input_ids, attention_mask=None, output_hidden_states=None):
        import torch

        if attention_mask is None and hasattr(self.module, "plain"):
            return self.module.plain(input_ids)
        return self.module(input_ids, torch.ones_like(input_ids) if attention_mask is None else attention_mask)

    def _edge_states(self, input_ids, width: int, left: bool, layer: int = -1):
        """The traced ``edge_states`` (traced at the export's width and layer: the reach and the pooled layer)."""
        if width != self.receptive_field:
            raise ValueError(f"the traced edge states are for width {self.receptive_field}, not {width}")
        return self.module.edge_left(input_ids) if left else self.module.edge_right(input_ids)


def traceable(embedder: "Embedder"):
    """The embedder's model as a module ``(input_ids, attention_mask) -> the pooled layer's hidden
    states`` (what :mod:`genembed.search.export` traces), with ``plain(input_ids)`` (no padding) and, for a
    model with ``edge_states`` and a reach, ``edge_left``/``edge_right`` (rows of twice the reach)."""
    import torch

    model = embedder.model
    reach = getattr(model, "receptive_field", None)
    layer = embedder.settings.layer

    class Encoder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, input_ids, attention_mask):
            return embedder.encode(input_ids, attention_mask)

        def plain(self, input_ids):
            return embedder.encode(input_ids)

        def edge_left(self, input_ids):
            return model.edge_states(input_ids, reach, True, layer)

        def edge_right(self, input_ids):
            return model.edge_states(input_ids, reach, False, layer)

    return Encoder()


def trace_encoder(embedder: "Embedder", ids, mask):
    """:func:`traceable` traced (TorchScript) on example rows ``ids`` (their ``mask`` with some padding):
    ``forward`` and ``plain``, and the edge methods where the model has ``edge_states`` and a reach."""
    import torch

    module = traceable(embedder)
    methods = {"forward": (ids, mask), "plain": (ids,)}
    reach = getattr(embedder.model, "receptive_field", None)
    if isinstance(reach, int) and hasattr(embedder.model, "edge_states") and ids.shape[1] >= 2 * reach:
        methods["edge_left"] = methods["edge_right"] = (ids[:, : 2 * reach].contiguous(),)
    return torch.jit.trace_module(module, methods, check_trace=False)


def _hidden(result: Any, layer: int):
    """The requested layer's hidden states from a model output (ModelOutput, tuple or tensor)."""
    if hasattr(result, "last_hidden_state") or hasattr(result, "hidden_states"):
        if layer == -1 and getattr(result, "last_hidden_state", None) is not None:
            return result.last_hidden_state
        states = getattr(result, "hidden_states", None)
        if states is None:
            raise GenembedError("the model returned no hidden states per layer; use embed.layer: -1")
        return states[layer]
    if isinstance(result, (tuple, list)):  # custom code returning plain tuples (DNABERT-2)
        if layer != -1:
            raise GenembedError("the model returns no hidden states per layer; use embed.layer: -1")
        return result[0]
    return result


def split_rows(tokens: np.ndarray, offsets: np.ndarray) -> list[np.ndarray]:
    """Token rows of a shard (views into ``tokens``)."""
    if len(offsets) < 2:
        return []
    return np.split(np.asarray(tokens), np.asarray(offsets[1:-1]))


def embed_tokens(embedder: Embedder, rows: Sequence[np.ndarray], label: str = "windows") -> np.ndarray:
    """Float16 embeddings of token rows, with a progress bar (windows/s) on stderr.

    With ``strands: average`` the rows are the forward rows then the reverse-complement rows,
    and each window's vector is the mean of its two strands.
    """
    from tqdm.auto import tqdm

    average = embedder.settings.strands == "average"
    if average and len(rows) % 2:
        raise GenembedError(f"{label}: strands 'average' needs forward and reverse rows, got an odd count {len(rows)}")
    n = len(rows) // 2 if average else len(rows)
    unit = " windows" if not average else " strands"  # with average, two strands per window
    with tqdm(total=len(rows), desc=label, unit=unit, file=sys.stderr, mininterval=1 if sys.stderr.isatty() else 30,
              disable=None if not log.isEnabledFor(logging.INFO) else False) as bar:
        vectors = embedder.embed_rows(rows, bar.update)
        log.info("%s: %d windows in %.1f s (%.1f windows/s)", label, n, bar.format_dict["elapsed"],
                 n / max(bar.format_dict["elapsed"], 1e-9))
    return average_strands(vectors, embedder.settings.strands).astype(np.float16)


def embed_sequences(embedder: Embedder, tokenizer: Any, seqs: Sequence[bytes], limit: int,
                    what: str = "sequences") -> np.ndarray:
    """Float32 vectors of sequences made as a run stores its windows' (strands as the settings say,
    float16 values); refused when one holds more than ``limit`` tokens."""
    from genembed.encode.tokenize import check_lengths, encode_strands

    rows = encode_strands(tokenizer, seqs, embedder.settings.strands)
    check_lengths(rows, limit, what)
    return embed_tokens(embedder, rows, what).astype(np.float32)


def average_strands(vectors: np.ndarray, strands: str) -> np.ndarray:
    """One vector per window: with ``average``, the mean of the forward and reverse-complement halves."""
    if strands != "average":
        return vectors
    n = len(vectors) // 2
    return (vectors[:n] + vectors[n:]) / 2


