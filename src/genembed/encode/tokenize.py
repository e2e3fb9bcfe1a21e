"""Turn window sequences into model token ids: a vectorised k-mer tokenizer (non-overlapping like
Nucleotide Transformer, overlapping like DNABERT) or the model's own Hugging Face tokenizer.
Token ids of a shard are stored as two memory-mappable ``.npy`` files: a flat int32 array and
int64 offsets (row ``i`` is ``tokens[offsets[i]:offsets[i + 1]]``)."""

from __future__ import annotations

import itertools
import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from genembed.errors import GenembedError
from genembed.data.io import atomic_path, read_table
from genembed.data.windows import encode

if TYPE_CHECKING:
    from genembed.encode.plan import RunPlan


@dataclass(frozen=True)
class TokenizerSpec:
    """``kind``: ``kmer`` (vectorised, vocabulary from the model) or ``hf`` (AutoTokenizer)."""

    kind: str = "hf"
    k: int = 6
    overlap: bool = False

    @classmethod
    def from_config(cls, cfg: dict[str, Any]) -> "TokenizerSpec":
        spec = cls(cfg.get("kind", "hf"), int(cfg.get("k", 6)), bool(cfg.get("overlap", False)))
        if spec.kind not in {"kmer", "hf"}:
            raise GenembedError(f"tokenizer.kind must be 'kmer' or 'hf', not {spec.kind!r}")
        return spec

    def describe(self) -> str:
        """The text stored in shards and manifests; :meth:`parse` reads it back."""
        if self.kind == "hf":
            return "hf"
        return f"kmer(k={self.k},{'overlapping' if self.overlap else 'non-overlapping'})"

    @classmethod
    def parse(cls, text: str) -> "TokenizerSpec":
        if text == "hf":
            return cls("hf")
        m = re.fullmatch(r"kmer\(k=(\d+),(overlapping|non-overlapping)\)", text)
        if not m:
            raise GenembedError(f"unknown tokenizer description {text!r}")
        return cls("kmer", int(m.group(1)), m.group(2) == "overlapping")


def clean_probe(n: int) -> bytes:
    """``n`` random A/C/G/T bases (fixed seed, so shorter probes are prefixes of longer ones): the
    worst case a vocabulary learnt on genomes sees."""
    codes = np.random.default_rng(0).integers(0, 4, n, dtype=np.uint8)
    return np.frombuffer(b"ACGT", np.uint8)[codes].tobytes()


class _Fits:
    def fits(self, n_bp: int, max_tokens: int) -> bool:
        """True when a clean window of ``n_bp`` bases tokenizes to at most ``max_tokens`` tokens."""
        return len(self.encode_batch([clean_probe(n_bp)])[0]) <= max_tokens


class KmerTokenizer(_Fits):
    """Vectorised k-mer tokenizer over the model's vocabulary.

    Non-overlapping mode follows Nucleotide Transformer: each run of A/C/G/T is cut into k-mers
    from its start, leftover bases and every other character become single-character tokens.
    Overlapping mode follows DNABERT: every k-mer at stride 1, ``[UNK]`` where it holds a non-ACGT base.
    """

    def __init__(self, vocab: dict[str, int], k: int, overlap: bool, prefix: list[int],
                 suffix: list[int], unk_id: int):
        self.k, self.overlap, self.unk = k, overlap, unk_id
        self.prefix, self.suffix = list(prefix), list(suffix)
        kmers = ("".join(p) for p in itertools.product("ACGT", repeat=k))
        self.kmer_lut = np.array([vocab.get(s, unk_id) for s in kmers], dtype=np.int32)
        self.char_lut = np.full(256, unk_id, dtype=np.int32)
        for char in range(256):
            token = chr(char).upper()
            if token in vocab:
                self.char_lut[char] = vocab[token]
        self.powers = 4 ** np.arange(k - 1, -1, -1, dtype=np.int64)

    @classmethod
    def from_hf(cls, tokenizer: Any, k: int, overlap: bool) -> "KmerTokenizer":
        """Vocabulary and start/end tokens from the model's own tokenizer.

        The start/end tokens are read off what the tokenizer itself produces for one k-mer, so
        models that add no end token, or whose special ids are 0, are followed exactly.
        """
        vocab = tokenizer.get_vocab()
        unk = tokenizer.unk_token_id
        probe = "A" * k
        if unk is None or probe not in vocab:
            raise GenembedError(f"the model's vocabulary has no {k}-mers (or no unknown token): use tokenizer.kind: hf")
        ids = list(tokenizer(probe, add_special_tokens=True)["input_ids"])
        if ids.count(vocab[probe]) != 1:
            raise GenembedError(f"the model's tokenizer does not read {probe} as one {k}-mer token: use tokenizer.kind: hf")
        at = ids.index(vocab[probe])
        return cls(vocab, k, overlap, ids[:at], ids[at + 1 :], unk)

    def to_json(self) -> dict[str, Any]:
        """Everything :meth:`from_json` needs (the lookup tables, not the model's tokenizer)."""
        return {"k": self.k, "overlap": self.overlap, "prefix": self.prefix, "suffix": self.suffix, "unk": self.unk,
                "kmer_lut": self.kmer_lut.tolist(), "char_lut": self.char_lut.tolist()}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> "KmerTokenizer":
        tok = cls({}, int(data["k"]), bool(data["overlap"]), data["prefix"], data["suffix"], int(data["unk"]))
        tok.kmer_lut = np.asarray(data["kmer_lut"], dtype=np.int32)
        tok.char_lut = np.asarray(data["char_lut"], dtype=np.int32)
        return tok

    def max_bp(self, max_tokens: int) -> int:
        """The longest clean (A/C/G/T) sequence whose tokens fit ``max_tokens``."""
        room = max_tokens - len(self.prefix) - len(self.suffix)
        if room < 1:
            return 0
        return room + self.k - 1 if self.overlap else room * self.k

    def _kmers(self, codes: np.ndarray) -> np.ndarray:
        """k-mer ids of clean code rows ``[n, L]`` (codes 0..3 only)."""
        n, length = codes.shape
        if self.overlap:
            if length < self.k:
                return np.empty((n, 0), dtype=np.int32)
            view = np.lib.stride_tricks.sliding_window_view(codes, self.k, axis=1)
            return self.kmer_lut[view.astype(np.int64) @ self.powers]
        m = length // self.k
        kmers = self.kmer_lut[codes[:, : m * self.k].reshape(n, m, self.k).astype(np.int64) @ self.powers]
        return np.concatenate([kmers, self.char_lut[np.frombuffer(b"ACGT", np.uint8)[codes[:, m * self.k:]]]], axis=1)

    def _dirty(self, seq: bytes, codes: np.ndarray) -> np.ndarray:
        """Token ids of one sequence holding non-ACGT characters."""
        if self.overlap:
            ids = self._kmers(np.where(codes == 4, 0, codes)[None])[0]
            if len(ids):
                bad = np.lib.stride_tricks.sliding_window_view(codes == 4, self.k).any(axis=1)
                ids[bad] = self.unk
            return ids
        clean = codes < 4
        edges = np.flatnonzero(np.diff(clean.astype(np.int8))) + 1
        parts = []
        for run in np.split(np.arange(len(codes)), edges):
            if clean[run[0]]:
                parts.append(self._kmers(codes[run][None])[0])
            else:
                parts.append(self.char_lut[np.frombuffer(seq, np.uint8)[run]])
        return np.concatenate(parts)

    def encode_batch(self, seqs: Sequence[bytes]) -> list[np.ndarray]:
        """Token ids (with the model's start/end tokens) for each upper-case sequence."""
        out: list[np.ndarray | None] = [None] * len(seqs)
        by_length: dict[int, list[int]] = {}
        for i, seq in enumerate(seqs):
            by_length.setdefault(len(seq), []).append(i)
        pre = np.array(self.prefix, dtype=np.int32)
        post = np.array(self.suffix, dtype=np.int32)
        for length, rows in by_length.items():
            codes = encode(b"".join(seqs[i] for i in rows)).reshape(len(rows), length)
            clean = (codes < 4).all(axis=1)
            if clean.any():
                kmers = self._kmers(codes[clean])
                for i, ids in zip(np.asarray(rows)[clean], kmers):
                    out[i] = np.concatenate([pre, ids, post])
            for j in np.flatnonzero(~clean):
                out[rows[j]] = np.concatenate([pre, self._dirty(seqs[rows[j]], codes[j]), post])
        return out  # type: ignore[return-value]


class HFTokenizer(_Fits):
    """The model's own tokenizer (BPE, character or any other), batched through the fast backend."""

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer

    def max_bp(self, max_tokens: int) -> int:
        """The longest prefix of a random A/C/G/T sequence whose tokens fit ``max_tokens``.

        Random sequence is the hardest case for a BPE vocabulary learnt from genomes (real windows
        use fewer tokens); the tokenize stage still checks every window. The bound is doubled from
        ``max_tokens`` bp until it no longer fits (at most 64 bp per token), then bisected."""
        longest = 64 * max_tokens
        lo, hi = 0, max_tokens
        while self.fits(hi, max_tokens):
            if hi >= longest:
                return longest
            lo, hi = hi, min(2 * hi, longest)
        while hi - lo > 1:  # fits lo and not hi
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if self.fits(mid, max_tokens) else (lo, mid)
        return lo

    def encode_batch(self, seqs: Sequence[bytes]) -> list[np.ndarray]:
        if not hasattr(self.tokenizer, "get_vocab_size"):  # a transformers tokenizer
            enc = self.tokenizer([s.decode() for s in seqs], add_special_tokens=True, truncation=False,
                                 return_attention_mask=False)
            return [np.asarray(ids, dtype=np.int32) for ids in enc["input_ids"]]
        # a bare ``tokenizers.Tokenizer`` (what an index keeps for queries: no transformers import)
        return [np.asarray(e.ids, dtype=np.int32) for e in self.tokenizer.encode_batch([s.decode() for s in seqs])]


def plan_tokenizer(plan: "RunPlan", hf: Any = None) -> KmerTokenizer | HFTokenizer:
    """The run's tokenizer: a k-mer one from the plan's tables (no transformers import), else over
    ``hf``, the model's own tokenizer (loaded when not given)."""
    if hf is None and plan.kmer_tables is not None:
        return KmerTokenizer.from_json(plan.kmer_tables)
    if hf is None:
        from genembed.encode.models import load_tokenizer

        hf = load_tokenizer(Path(plan.folder), plan.model)
    return make_tokenizer(plan.tokenizer, hf)


def make_tokenizer(spec: TokenizerSpec, hf_tokenizer: Any) -> KmerTokenizer | HFTokenizer:
    if spec.kind == "kmer":
        return KmerTokenizer.from_hf(hf_tokenizer, spec.k, spec.overlap)
    return HFTokenizer(hf_tokenizer)


_COMPLEMENT = bytes.maketrans(b"ACGTRYKMBVDHNSW", b"TGCAYRMKVBHDNSW")


def reverse_complement(seq: bytes) -> bytes:
    """Reverse complement of an upper-case IUPAC sequence."""
    return seq.translate(_COMPLEMENT)[::-1]


def encode_strands(tokenizer: KmerTokenizer | HFTokenizer, seqs: Sequence[bytes], strands: str) -> list[np.ndarray]:
    """Token rows of ``seqs``; with ``strands="average"`` the reverse-complement rows follow the forward rows."""
    rows = tokenizer.encode_batch(seqs)
    if strands == "average":
        rows += tokenizer.encode_batch([reverse_complement(s) for s in seqs])
    return rows


def token_fit(tokenizer: KmerTokenizer | HFTokenizer, max_tokens: int,
              strands: str = "forward") -> Callable[[Sequence[bytes]], np.ndarray]:
    """A test of which sequences fit the model: at most ``max_tokens`` tokens (both strands when
    embedding averages them)."""

    def fits(seqs: Sequence[bytes]) -> np.ndarray:
        rows = encode_strands(tokenizer, seqs, strands)
        ok = np.array([len(r) <= max_tokens for r in rows], dtype=bool)
        return ok.reshape(-1, len(seqs)).all(axis=0) if len(seqs) else ok

    return fits


def check_lengths(rows: Sequence[np.ndarray], limit: int, what: str) -> None:
    """Refuse inputs longer than the model takes, naming both numbers."""
    longest = max((len(r) for r in rows), default=0)
    if longest > limit:
        raise GenembedError(
            f"{what}: {longest} tokens per window but the model takes at most {limit}; use smaller windows"
        )


def write_tokens(tokens_path: str | os.PathLike, offsets_path: str | os.PathLike,
                 rows: Sequence[np.ndarray]) -> None:
    """Store ragged token rows as flat int32 tokens plus int64 offsets, atomically."""
    offsets = np.zeros(len(rows) + 1, dtype=np.int64)
    offsets[1:] = np.cumsum([len(r) for r in rows])
    flat = np.concatenate(rows).astype(np.int32) if rows else np.empty(0, dtype=np.int32)
    with atomic_path(tokens_path) as tmp_tokens, atomic_path(offsets_path) as tmp_offsets:
        with open(tmp_tokens, "wb") as fh:
            np.save(fh, flat)
        with open(tmp_offsets, "wb") as fh:
            np.save(fh, offsets)


def read_tokens(tokens_path: str | os.PathLike, offsets_path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Memory-mapped flat tokens and their offsets."""
    return np.load(tokens_path, mmap_mode="r"), np.load(offsets_path)


def tokenize_shard(windows: str | os.PathLike, fasta: str | os.PathLike, tokenizer: KmerTokenizer | HFTokenizer,
                   max_tokens: int, out_tokens: str | os.PathLike, out_offsets: str | os.PathLike,
                   strands: str = "forward", chunk: int = 4096) -> int:
    """Stage: token ids for one shard's windows, refused when longer than the model takes.

    With ``strands="average"`` the reverse-complement rows follow all forward rows."""
    from genembed.data.genome import Genome
    from genembed.data.windows import window_sequences

    table = read_table(windows, ["contig", "start", "end"])
    genome = Genome(fasta)
    forward: list[np.ndarray] = []
    reverse: list[np.ndarray] = []
    try:
        seqs = window_sequences(genome, table)
        while batch := list(itertools.islice(seqs, chunk)):
            rows = encode_strands(tokenizer, batch, strands)
            forward.extend(rows[: len(batch)])
            reverse.extend(rows[len(batch) :])
    finally:
        genome.close()
    rows = forward + reverse
    check_lengths(rows, max_tokens, str(windows))
    write_tokens(out_tokens, out_offsets, rows)
    return len(forward)
