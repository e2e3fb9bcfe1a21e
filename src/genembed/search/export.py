"""A built index keeps a traced copy (TorchScript) of the encoder its queries need, with the token
tables, so that a query loads with torch alone: no transformers import, which is most of a cold
``genembed query``. It is made when the index is built and checked against the model itself on
windows of several lengths; an index without it (or a model that cannot be traced, or a machine
with a GPU) embeds queries through transformers as before. TorchScript is deprecated in torch 2.13
but loads in milliseconds (``torch.export.load`` takes about 2 s); if a later torch drops it, the
export is skipped and queries load transformers."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import shutil
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

from genembed.encode.embed import EmbedSettings, Embedder, trace_encoder
from genembed.errors import GenembedError
from genembed.data.io import atomic_path, ensure_space, write_json
from genembed.search.index import IndexManifest
from genembed.encode.models import resolve
from genembed.encode.tokenize import HFTokenizer, KmerTokenizer, TokenizerSpec, make_tokenizer

log = logging.getLogger(__name__)
QUERY_MODEL, QUERY_INFO, QUERY_TOKENIZER = "query_model.ts", "query_model.json", "query_tokenizer.json"


def query_settings(manifest: IndexManifest, device: str = "auto") -> EmbedSettings:
    """How queries are embedded: the index's pooling, layer and strands; its precision where this
    machine has it (fp16 is a GPU format: fp32 on a CPU)."""
    s = manifest["settings"]
    precision = {"bfloat16": "bf16", "float16": "fp16"}.get(s.get("precision"), "fp32")
    if precision == "fp16" and (device == "cpu" or not _has_cuda()):
        precision = "fp32"
    return EmbedSettings(pooling=s["pooling"], layer=int(s["layer"]), precision=precision,
                         strands=s.get("strands", "forward"), device=device)


def _has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def _probes() -> list[bytes]:
    """Sequences of several lengths, with and without N, for checking a trace (fixed seed)."""
    rng = np.random.default_rng(0)
    seqs = [np.frombuffer(b"ACGT", np.uint8)[rng.integers(0, 4, n)].tobytes() for n in (40, 97, 150, 150, 233, 300)]
    seqs[2] = seqs[2][:60] + b"NNN" + seqs[2][63:]
    return seqs


def export_query_model(index_dir: str | os.PathLike, manifest: IndexManifest) -> bool:
    """Trace the index's query encoder on the CPU and save it beside the index; False (and nothing
    written) when the model cannot be traced faithfully."""
    import torch

    from genembed.encode.scan import model_reach

    out = Path(index_dir)
    spec = manifest.model()
    settings = replace(query_settings(manifest, "cpu"), token_budget=400)  # several batch shapes in the check
    embedder = Embedder(spec, settings)
    tok_spec = TokenizerSpec.parse(manifest["settings"]["tokenizer"])
    tokenizer = make_tokenizer(tok_spec, embedder.tokenizer)
    source = resolve(spec) / "tokenizer.json"
    if tok_spec.kind == "hf" and not source.is_file():
        log.info("no tokenizer.json in %s: queries will load transformers", spec.source)
        return False
    rows = tokenizer.encode_batch(_probes())
    example = [torch.from_numpy(rows[1].astype(np.int64))[None].repeat(2, 1)]
    mask = torch.ones_like(example[0])
    mask[1, -10:] = 0
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # tracer warnings; the check below decides
            traced = trace_encoder(embedder, example[0], mask)
    except Exception as exc:  # any model code that tracing cannot follow
        log.info("cannot trace %s (%s): queries will load transformers", spec.source, exc)
        return False
    info = {"fingerprint": manifest.plan.fingerprint, "dtype": embedder.precision, "pad_id": embedder.pad_id,
            "special": embedder.special.tolist(), "takes_mask": embedder.takes_mask, "dim": embedder.hidden_size,
            "tokenizer": {"kind": "kmer", **tokenizer.to_json()} if isinstance(tokenizer, KmerTokenizer) else {"kind": "hf"},
            "receptive_field": model_reach(embedder)}  # queries' overlapping pieces then share one pass
    copy = Embedder.from_traced(traced, info, settings)
    want, got = embedder.embed_rows(rows), copy.embed_rows(rows)
    cosine = (want * got).sum(1) / np.maximum(np.linalg.norm(want, axis=1) * np.linalg.norm(got, axis=1), 1e-12)
    if hasattr(copy.model, "edge_states"):  # the window edges a scan runs on their own
        r = info["receptive_field"]
        edges = torch.from_numpy(np.stack([row[: 2 * r] for row in rows if len(row) >= 2 * r]).astype(np.int64))
        with torch.inference_mode():
            for left in (True, False):
                a, b = (m.edge_states(edges, r, left, settings.layer).float().flatten(1)
                        for m in (embedder.model, copy.model))
                cosine = np.minimum(cosine.min(), float(torch.nn.functional.cosine_similarity(a, b).min()))
    if cosine.min() < 0.9999:
        log.info("the traced %s differs from the model (cosine %.5f): queries will load transformers",
                 spec.source, cosine.min())
        return False
    ensure_space(out / QUERY_MODEL, 2 * sum(p.numel() * p.element_size() for p in traced.parameters()))
    with atomic_path(out / QUERY_MODEL) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TorchScript is deprecated in torch 2.13; see the module doc
        torch.jit.save(traced, str(tmp))
    info["sha256"] = _sha256(out / QUERY_MODEL)  # checked before loading: only the file written here runs
    if info["tokenizer"]["kind"] == "hf":
        with atomic_path(out / QUERY_TOKENIZER) as tmp:
            shutil.copyfile(source, tmp)
    write_json(out / QUERY_INFO, info)
    return True


def load_query_model(index_dir: str | os.PathLike, manifest: IndexManifest) -> tuple[Embedder, Any] | None:
    """The traced query encoder and tokenizer an index keeps, or None (none kept, another model, a GPU here)."""
    index_dir = Path(index_dir)
    if not (index_dir / QUERY_INFO).is_file() or _has_cuda():
        return None
    info = json.loads((index_dir / QUERY_INFO).read_text())
    if info.get("fingerprint") != manifest.plan.fingerprint:
        return None
    import torch

    if not (index_dir / QUERY_MODEL).is_file():
        raise GenembedError(f"{index_dir / QUERY_MODEL}: missing (the traced query encoder {QUERY_INFO} names);"
                            " rebuild the index, or query with --model")
    if info.get("sha256") != _sha256(index_dir / QUERY_MODEL):
        raise GenembedError(f"{index_dir / QUERY_MODEL}: does not match the checksum recorded when the index was "
                            f"built; refusing to load it (rebuild the index, or query with --model)")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            module = torch.jit.load(str(index_dir / QUERY_MODEL), map_location="cpu")
    except (RuntimeError, ValueError) as exc:
        raise GenembedError(f"{index_dir / QUERY_MODEL}: corrupt or unreadable ({str(exc).splitlines()[0]})") from None
    embedder = Embedder.from_traced(module, info, query_settings(manifest, "cpu"))
    if info["tokenizer"]["kind"] == "kmer":
        return embedder, KmerTokenizer.from_json(info["tokenizer"])
    from tokenizers import Tokenizer

    if not (index_dir / QUERY_TOKENIZER).is_file():
        raise GenembedError(f"{index_dir / QUERY_TOKENIZER}: missing (the tokenizer of the traced query encoder"
                            f" {QUERY_INFO} names); rebuild the index, or query with --model")
    try:
        tok = Tokenizer.from_file(str(index_dir / QUERY_TOKENIZER))
    except Exception as exc:  # the tokenizers library raises plain Exception
        raise GenembedError(f"{index_dir / QUERY_TOKENIZER}: unreadable tokenizer ({str(exc).splitlines()[0]});"
                            " rebuild the index, or query with --model") from None
    tok.no_padding()
    tok.no_truncation()
    return embedder, HFTokenizer(tok)


def _sha256(path: Path) -> str | None:
    if not path.is_file():
        return None
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()
