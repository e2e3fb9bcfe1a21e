"""Where a run's files live, below one results folder: the workflow's ``results/`` and the folder
``genembed embed --out`` fills are laid out alike, so every stage and command finds them one way."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

from genembed.errors import GenembedError

PLAN = "model/model.json"
GENOME = "genomes/{genome}/genome.fa.gz"
WINDOWS = "windows/{genome}/{shard}.parquet"
TOKENS = "tokens/{genome}/{shard}.tokens.npy"
OFFSETS = "tokens/{genome}/{shard}.offsets.npy"
EMBEDDINGS = "embeddings/{genome}/{shard}.h5"
PACK = "packs/{pack}"  # small genomes embedded in one job, laid out as a results folder of their own
PACK_RECORD = "pack.json"  # in a pack's folder: its genomes, in the order they were embedded (written last)
TRACK = "embeddings/{genome}/track.h5"  # a pack's dense promoter-track windows (genembed.encode.scan.scan_with_track)
TRACK_PART = "embeddings/{genome}/track/{shard}.h5"  # a shard's part of them (genembed.run.pipeline.embed_shard_track)
PROMOTER_WEIGHTS = "promoters/model.pt"  # the stranded promoter model a run trains (genembed.reports.stranded)
PROMOTER_RECORD = "promoters/model.json"  # its calibration, threshold and provenance
SHARD_SCORES = "promoters/shard_scores/{genome}/{shard}.parquet"  # its probabilities in a shard's track span
PACK_SCORES = "promoters/pack_scores/{pack}.parquet"  # and in a pack's genomes
STITCHED = "embeddings/{genome}/all.h5"  # a genome's shards as one virtual HDF5 file, inside its own folder:
# no genome id can name another's file (as eco.h5 could name eco's stitched file beside the folders)


def shard_name(i: int) -> str:
    return f"{i:05d}"


@dataclass(frozen=True)
class ShardFiles:
    """One shard's windows (Parquet), token files and embeddings (HDF5)."""

    windows: Path
    tokens: Path
    offsets: Path
    out: Path

    @classmethod
    def at(cls, root: str | os.PathLike, genome: str, shard: str) -> "ShardFiles":
        root = Path(root)
        return cls(*(root / p.format(genome=genome, shard=shard) for p in (WINDOWS, TOKENS, OFFSETS, EMBEDDINGS)))


@dataclass
class GenomeInputs:
    """A genome's prepared FASTA, optional annotation or promoter BED, and its shards (window tables
    and embeddings, in shard order)."""

    name: str
    fasta: Path
    annotation: Path | None
    windows: list[Path] = field(default_factory=list)
    shards: list[Path] = field(default_factory=list)
    promoters: Path | None = None  # BED of known promoters or TSSs; takes precedence over the annotation
    track: Path | None = None  # vectors of dense-track windows made with the embeddings (genembed.data.store.write_track)
    track_parts: list[Path] = field(default_factory=list)  # the same, one file per shard (made by the shard jobs)

    @property
    def has_starts(self) -> bool:
        """Whether promoter labels can be made: an annotation or a promoter BED."""
        return self.annotation is not None or self.promoters is not None


def group_shards(shards: Sequence[str | os.PathLike], sheet: Mapping[str, Mapping[str, Any]] | None = None
                 ) -> list[GenomeInputs]:
    """The genomes of these embedding shards (``ROOT/embeddings/{genome}/{shard}.h5``), each with its
    window tables and prepared FASTA from the same layout; in ``sheet`` order (whose rows give the
    annotation and promoter files, and whose genomes without shards are kept), else by name."""
    found: dict[str, list[Path]] = {}
    roots: dict[str, Path] = {}
    for shard in sorted(Path(s) for s in shards):
        genome = shard.parent.name
        found.setdefault(genome, []).append(shard)
        roots[genome] = shard.parents[2]
    rows = dict(sheet or {})
    out = []
    for genome in [*rows, *sorted(set(found) - set(rows))]:
        row = rows.get(genome, {})
        root = roots.get(genome, Path("results"))
        files = [ShardFiles.at(root, genome, s.stem) for s in found.get(genome, [])]
        parts = [root / TRACK_PART.format(genome=genome, shard=s.stem) for s in found.get(genome, [])]
        out.append(GenomeInputs(genome, root / GENOME.format(genome=genome),
                                Path(row["annotation"]) if row.get("annotation") else None,
                                [f.windows for f in files], [f.out for f in files],
                                Path(row["promoters"]) if row.get("promoters") else None,
                                track_parts=[p for p in parts if p.is_file()]))
    return out


def with_tracks(genomes: list[GenomeInputs], folders: Sequence[str | os.PathLike]) -> list[GenomeInputs]:
    """``genomes`` with the track file each has in one of these results folders (packs), if any."""
    for g in genomes:
        found = [Path(f) / TRACK.format(genome=g.name) for f in folders]
        g.track = next((t for t in found if t.is_file()), g.track)
    return genomes


def discover(root: str | os.PathLike) -> list[GenomeInputs]:
    """Every genome embedded under a results folder (``genembed embed --out`` or the workflow's ``results/``)."""
    shards = sorted(Path(root).glob(EMBEDDINGS.format(genome="*", shard="[0-9]*")))
    if not shards:
        raise GenembedError(f"{root}: no embedding shards found (expected {Path(root) / EMBEDDINGS})")
    return with_tracks(group_shards(shards), sorted(Path(root).glob(PACK.format(pack="*"))))  # packs write tracks
