"""What a run will do, fixed once before any job (the workflow's ``describe_model`` job or
``genembed embed``) and read by every stage: the resolved, fingerprinted model, its tokenizer, the
windows that fit it and the embedding settings (``results/model/model.json``)."""

from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass, fields, replace
from pathlib import Path
from typing import Any

from genembed.encode.embed import EmbedSettings
from genembed.errors import GenembedError
from genembed.data.io import write_json
from genembed.encode.models import ModelSpec, fingerprint, load_tokenizer, max_tokens, read_config, resolve
from genembed.encode.tokenize import KmerTokenizer, TokenizerSpec, make_tokenizer
from genembed.data.windows import WindowPlan


@dataclass(frozen=True)
class TrackSpec:
    """The promoter report's dense track: windows of the run's ``size`` every ``step`` bp (those with
    at most ``max_n_fraction`` N), embedded beside the run's windows and scored one value per step."""

    step: int
    size: int
    max_n_fraction: float

    def attrs(self) -> dict[str, Any]:
        """What a track file records of it (and is checked against: :meth:`differs`)."""
        return {"track_step": self.step, "window_size": self.size, "max_n_fraction": self.max_n_fraction}

    def differs(self, attrs: dict[str, Any]) -> list[str]:
        """The fields in which a track file's ``attrs`` were made otherwise."""
        return [k for k, v in self.attrs().items() if attrs.get(k) is None or type(v)(attrs[k]) != v]


@dataclass(frozen=True)
class RunPlan:
    """The model (``folder`` resolved, ``fingerprint`` of its files), the tokenizer, the window plan
    and the embedding settings of a run. Its JSON keeps the model's keys at the top level: it is the
    ``model`` entry of an index manifest."""

    source: str
    folder: str
    fingerprint: str
    max_tokens: int
    tokenizer: TokenizerSpec
    windows: WindowPlan
    embed: EmbedSettings = EmbedSettings()
    revision: str | None = None
    trust_remote_code: bool = False
    model_type: str | None = None
    hidden_size: int | None = None
    tokenizer_class: str = ""
    kmer_tables: dict[str, Any] | None = None  # a k-mer tokenizer's lookup tables: windows and tokens jobs
    # build it from these, without loading transformers (most of a light job's start-up)

    @classmethod
    def make(cls, spec: ModelSpec, tokenizer: TokenizerSpec, windows: dict[str, Any],
             embed: EmbedSettings = EmbedSettings()) -> "RunPlan":
        """Resolve and fingerprint the model, and plan windows that fit it (``auto`` sizes resolved);
        the precision is decided here, once for every job of the run (``auto``: see
        :func:`genembed.encode.device.plan_precision`)."""
        from genembed.encode.device import plan_precision

        embed = replace(embed, precision=plan_precision(embed.precision, embed.device))
        folder = resolve(spec)
        hf = load_tokenizer(folder, spec)
        cfg = read_config(folder)
        limit = max_tokens(folder, hf)
        tok = make_tokenizer(tokenizer, hf)
        window_plan = WindowPlan.resolve(windows, tok.max_bp(limit), lambda n: tok.fits(n, limit), spec.source, limit)
        return cls(spec.source, str(folder), fingerprint(folder), limit, tokenizer, window_plan, embed, spec.revision,
                   spec.trust_remote_code, cfg.get("model_type"), cfg.get("hidden_size") or cfg.get("d_model"),
                   type(hf).__name__, tok.to_json() if isinstance(tok, KmerTokenizer) else None)

    @property
    def model(self) -> ModelSpec:
        """The model as loaded by every stage: the resolved folder, with the revision and remote-code opt-in."""
        return ModelSpec(self.folder, self.revision, self.trust_remote_code)

    def to_json(self) -> dict[str, Any]:
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        return {**out, "tokenizer": self.tokenizer.describe(), "windows": asdict(self.windows), "embed": asdict(self.embed)}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "RunPlan":
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        values["tokenizer"] = TokenizerSpec.parse(data["tokenizer"])
        values["windows"] = WindowPlan(**data["windows"])
        values["embed"] = EmbedSettings(**data.get("embed", {}))
        return cls(**values)

    def write(self, path: str | os.PathLike) -> None:
        write_json(path, self.to_json())

    @classmethod
    def read(cls, path: str | os.PathLike) -> "RunPlan":
        try:
            return cls.from_json(json.loads(Path(path).read_text()))
        except FileNotFoundError:
            raise GenembedError(f"{path}: run plan not found (made by the describe_model job or genembed embed)") from None
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise GenembedError(f"{path}: not a genembed run plan ({type(exc).__name__}: {exc}); plan the run again") from None

    def track(self, step: int) -> TrackSpec | None:
        """The run's dense promoter track for a track step: windows of the run's size every ``step``
        bp, when the step is below the stride; None otherwise (each stored window's score stands on
        its central ``stride`` bp: nothing more is embedded). The one place this policy lives."""
        w = self.windows
        return TrackSpec(step, w.size, w.max_n_fraction) if 0 < step < w.stride else None

    def shard_attrs(self, embedder: Any) -> dict[str, Any]:
        """The attrs that make a shard self-describing (and that an index checks): the plan's model,
        tokenizer and windows, and what the embedder does (pooling, layer, strands, precision, width)."""
        s = embedder.settings
        return {
            "model": self.source, "model_fingerprint": self.fingerprint, "revision": self.revision,
            "tokenizer": self.tokenizer.describe(), "pooling": s.pooling, "layer": s.layer, "strands": s.strands,
            "precision": embedder.precision, "window_size": self.windows.size, "window_stride": self.windows.stride,
            "dim": embedder.hidden_size,
        }
