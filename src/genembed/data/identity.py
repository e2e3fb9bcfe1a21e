"""What makes two sets of vectors comparable: a shard's identity (model, tokenizer, pooling, layer,
strands, windows, and for an index also precision and width), read from HDF5 attrs, a track file,
an index's sidecar or manifest, and compared field by field, never as strings."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping, Sequence

from genembed.errors import GenembedError

# what a query must share with an index; shards to be indexed together also share precision and width
QUERY_FIELDS = ("model_fingerprint", "tokenizer", "pooling", "layer", "strands", "window_size", "window_stride")
INDEX_FIELDS = (*QUERY_FIELDS, "precision", "dim")


def _plain(value: Any) -> Any:
    value = value.item() if hasattr(value, "item") else value  # numpy scalars from HDF5 attrs
    return None if value in ("", None) else value


def _int(value: Any) -> int | None:
    value = _plain(value)
    return None if value is None else int(value)


def _str(value: Any) -> str | None:
    value = _plain(value)
    return None if value is None else str(value)


@dataclass(frozen=True)
class ShardIdentity:
    """How a shard's vectors were made. ``strands`` absent (shards from before it existed) reads as
    ``forward``; precision and width are absent from a query's identity."""

    model_fingerprint: str | None
    tokenizer: str | None
    pooling: str | None
    layer: int | None
    strands: str
    window_size: int | None
    window_stride: int | None
    precision: str | None = None
    dim: int | None = None

    @classmethod
    def from_attrs(cls, attrs: Mapping[str, Any]) -> "ShardIdentity":
        """From a shard's or track's HDF5 attrs, an index sidecar's ``identity`` or a manifest's ``settings``."""
        return cls(_str(attrs.get("model_fingerprint")), _str(attrs.get("tokenizer")), _str(attrs.get("pooling")),
                   _int(attrs.get("layer")), _str(attrs.get("strands")) or "forward", _int(attrs.get("window_size")),
                   _int(attrs.get("window_stride")), _str(attrs.get("precision")), _int(attrs.get("dim")))

    def to_attrs(self, names: Sequence[str] = INDEX_FIELDS) -> dict[str, Any]:
        """The fields named (all by default) as plain JSON/HDF5 values."""
        values = asdict(self)
        return {k: values[k] for k in names}

    def diff(self, other: "ShardIdentity", names: Sequence[str] = INDEX_FIELDS) -> list[str]:
        """The fields (of ``names``) in which ``other`` differs, in field order."""
        return [f.name for f in fields(self) if f.name in names and getattr(self, f.name) != getattr(other, f.name)]

    def differences(self, other: "ShardIdentity", theirs: str, names: Sequence[str] = INDEX_FIELDS) -> str:
        """``diff`` in words: ``pooling 'max' (index: 'mean'); layer ...``, ``theirs`` naming ``other``."""
        return "; ".join(f"{k} {getattr(self, k)!r} ({theirs}: {getattr(other, k)!r})" for k in self.diff(other, names))

    def require(self, other: "ShardIdentity", what: str, theirs: str, label: str, names: Sequence[str] = INDEX_FIELDS,
                advice: str = "") -> None:
        """Refuse ``what`` (made as ``self``) where ``other`` (``theirs``; ``label`` in the list) differs:
        one line naming every differing field."""
        if self.diff(other, names):
            raise GenembedError(f"{what} were made otherwise than {theirs}: {self.differences(other, label, names)}"
                                + (f"; {advice}" if advice else ""))
