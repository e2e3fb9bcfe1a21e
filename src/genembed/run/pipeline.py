"""The stages of a run over its results folder (:mod:`genembed.data.layout`), one function each, driven
shard by shard by the workflow's jobs and genome by genome by ``genembed embed``: both read the
same :class:`~genembed.encode.plan.RunPlan` and write the same files."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from genembed.errors import GenembedError
from genembed.data.layout import GENOME, PLAN, GenomeInputs, ShardFiles, shard_name
from genembed.encode.plan import RunPlan, TrackSpec
from genembed.encode.embed import Embedder
from genembed.encode.tokenize import plan_tokenizer

log = logging.getLogger(__name__)


def window_stage(plan: RunPlan, genome: str, fasta: str | os.PathLike, shard: int, out: str | os.PathLike,
                 tokenizer: Any = None) -> int:
    """One shard's windows as Parquet; windows whose tokens the model cannot take are dropped."""
    from genembed.data.genome import read_fai
    from genembed.encode.tokenize import token_fit
    from genembed.data.windows import write_shard_windows

    fits = token_fit(tokenizer or plan_tokenizer(plan), plan.max_tokens, plan.embed.strands)
    spec = plan.windows.spec(read_fai(f"{fasta}.fai"))
    return write_shard_windows(genome, fasta, spec, shard, out, fits)


def tokenize_stage(plan: RunPlan, windows: str | os.PathLike, fasta: str | os.PathLike, tokens: str | os.PathLike,
                   offsets: str | os.PathLike, tokenizer: Any = None) -> int:
    """One shard's token ids (both strands, reverse complement after, with ``strands: average``)."""
    from genembed.encode.tokenize import tokenize_shard

    return tokenize_shard(windows, fasta, tokenizer or plan_tokenizer(plan), plan.max_tokens, tokens, offsets,
                          plan.embed.strands)


def prepare_stage(plan: RunPlan, genome: str, fasta: str | os.PathLike, files: ShardFiles, tokenizer: Any) -> None:
    """One shard's windows and token ids, from a prepared FASTA (what runs beside the embedding)."""
    window_stage(plan, genome, fasta, int(files.out.stem), files.windows, tokenizer)
    tokenize_stage(plan, files.windows, fasta, files.tokens, files.offsets, tokenizer)


def embed_stage(plan: RunPlan, shards: Sequence[ShardFiles], embedder: Any, prepare: Any = None,
                vectors_of: Any = None, extra: dict[str, Any] | None = None) -> int:
    """Shards' tokens through the model into HDF5 (one model load; see :func:`genembed.encode.shards.embed_shards`);
    ``extra`` attrs join the plan's."""
    from genembed.encode.shards import embed_shards

    return embed_shards(list(shards), embedder, {**plan.shard_attrs(embedder), **(extra or {})}, prepare, vectors_of)


def sequence_checksum(prepared: str | os.PathLike) -> str:
    """A checksum of a prepared genome copy (its bgzip bytes: the same sequence prepares alike), which
    the CLI's shards carry so that a FASTA changed under the same genome id is embedded again."""
    import hashlib

    digest = hashlib.blake2b(digest_size=16)
    with open(prepared, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 22), b""):
            digest.update(block)
    return digest.hexdigest()


def embed_genome(plan: RunPlan, fasta: str | os.PathLike, genome: str, root: str | os.PathLike,
                 embedder: Any = None) -> tuple[GenomeInputs, list[Path], int]:
    """Every stage of one genome into ``root`` (prepared FASTA, windows, tokens, embeddings, and the
    plan), with one model load; the next shard is windowed and tokenized while one embeds. Shards
    already embedded with this plan are kept (resume after a kill). Returns the genome's files, the
    shards kept and the number of windows embedded now."""
    from genembed.data.genome import prepare_fasta
    from genembed.data.io import missing_folders, remove_empty
    from genembed.data.store import is_complete
    from genembed.data.windows import check_genome_id, shard_count

    root = Path(root)
    check_genome_id(genome)
    embedder = embedder or Embedder.for_plan(plan)
    prepared = root / GENOME.format(genome=genome)
    existed, planned = prepared.is_file(), (root / PLAN).is_file()
    files = []
    made = missing_folders(prepared.parent)
    try:
        contigs = prepare_fasta(fasta, prepared)
        n_shards = shard_count(contigs, plan.windows.spec(contigs), fasta)
        files = [ShardFiles.at(root, genome, shard_name(i)) for i in range(n_shards)]
        for folder in {p.parent for f in files[:1] for p in (f.windows, f.tokens, f.out, root / PLAN)}:
            made += missing_folders(folder)
        sequence = {"genome_checksum": sequence_checksum(prepared)}
        attrs = {**plan.shard_attrs(embedder), **sequence}
        _check_same_identity(attrs, root, genome)
        plan.write(root / PLAN)  # what `genembed index` and `report` read (shards of another plan are refused there)
        tokenizer = plan_tokenizer(plan, embedder.tokenizer)
        kept = [f.out for f in files if is_complete(f.out, attrs) and f.windows.is_file()]
        todo = [f for f in files if f.out not in kept]
        _remove_other_shards(files)  # a genome that changed may have fewer shards now
        n = embed_stage(plan, todo, embedder, lambda f: prepare_stage(plan, genome, prepared, f, tokenizer),
                        extra=sequence)
    except GenembedError:
        if not existed and not any(f.out.is_file() for f in files):  # a new genome that could not be embedded
            for f in files:  # at all leaves nothing behind
                for path in (f.windows, f.tokens, f.offsets):
                    path.unlink(missing_ok=True)
            for path in (prepared, Path(f"{prepared}.fai"), Path(f"{prepared}.gzi"), *([] if planned else [root / PLAN])):
                path.unlink(missing_ok=True)
            remove_empty(sorted(set(made), key=lambda p: len(p.parts), reverse=True))
        raise
    return GenomeInputs(genome, prepared, None, [f.windows for f in files], [f.out for f in files]), kept, n


def _check_same_identity(attrs: dict[str, Any], root: Path, genome: str) -> None:
    """Refuse to embed a genome into a results folder whose other genomes' shards differ from these
    ``attrs`` where ``genembed index`` needs them alike (their :class:`genembed.data.identity.ShardIdentity`):
    the run plan would be overwritten and the folder could not be indexed."""
    from genembed.data.identity import ShardIdentity
    from genembed.data.store import read_attrs

    others = sorted(p for p in (root / "embeddings").glob("*/[0-9]*.h5") if p.parent.name != genome)
    changed = ShardIdentity.from_attrs(read_attrs(others[0])).diff(ShardIdentity.from_attrs(attrs)) if others else []
    if changed:
        names = sorted({p.parent.name for p in others})
        raise GenembedError(f"{root / PLAN}: {root} holds genomes embedded with another"
                            f" {', '.join(k.replace('_', ' ') for k in changed)} ({', '.join(names[:3])});"
                            " embed into another --out, or with the same settings")


def _remove_other_shards(files: list[ShardFiles]) -> None:
    """Delete a genome's shard files (embeddings, windows, tokens) that are not among ``files``."""
    wanted = {f.out.name for f in files}
    for f in files[:1]:
        for old in f.out.parent.glob("[0-9]*.h5"):
            if old.name not in wanted:
                stale = ShardFiles.at(f.out.parents[2], f.out.parent.name, old.stem)
                for path in (stale.out, stale.windows, stale.tokens, stale.offsets):
                    path.unlink(missing_ok=True)


def embed_pack(plan: RunPlan, genomes: dict[str, str | os.PathLike], out: str | os.PathLike,
               embedder: Any = None, track_step: int = 0) -> int:
    """Several small genomes through every stage in one job (one process, one model load): each
    genome in one shard, into ``out`` laid out as a results folder (:mod:`genembed.data.layout`), with its
    stitched file; the next genome is prepared, windowed and tokenized while one embeds, and token
    files go once embedded. ``out/pack.json`` lists the genomes, written last. Returns the windows
    embedded.

    With a ``track_step`` (the promoter track's) below the stride and a model whose states are
    local, each genome's windows every ``track_step`` bp are embedded in the same pass as its shard
    (:func:`genembed.encode.scan.scan_with_track`) into ``embeddings/{genome}/track.h5``: the promoter
    report then needs no model."""
    from dataclasses import replace

    from genembed.data.genome import prepare_fasta
    from genembed.data.io import write_json
    from genembed.data.layout import PACK_RECORD, STITCHED
    from genembed.data.store import stitch
    from genembed.data.windows import shard_count

    one_shard = replace(plan, windows=replace(plan.windows, shard_size=1 << 40))
    embedder = embedder or Embedder.for_plan(plan)
    tokenizer = plan_tokenizer(plan, embedder.tokenizer)
    out = Path(out)
    files = {g: ShardFiles.at(out, g, shard_name(0)) for g in genomes}
    genome_of = {f.out: g for g, f in files.items()}

    def prepare(f: ShardFiles) -> None:  # runs in the background while the previous genome embeds
        genome = genome_of[f.out]
        prepared = out / GENOME.format(genome=genome)
        contigs = prepare_fasta(genomes[genome], prepared)
        shard_count(contigs, one_shard.windows.spec(contigs), str(genomes[genome]))  # refuses a genome without windows
        prepare_stage(one_shard, genome, prepared, f, tokenizer)

    track = _track_maker(plan, embedder, tokenizer, out, genome_of, spec) if (spec := plan.track(track_step)) else None
    total = embed_stage(one_shard, list(files.values()), embedder, prepare, track)
    for genome, f in files.items():
        f.tokens.unlink()
        f.offsets.unlink()
        stitch([f.out], out / STITCHED.format(genome=genome), [f.windows], genome)
    write_json(out / PACK_RECORD, {"genomes": list(genomes), "windows": total})
    log.info("%d genomes, %d windows embedded", len(genomes), total)
    return total


def track_attrs_of(plan: RunPlan, embedder: Any, track: TrackSpec, contigs: dict[str, int]) -> dict[str, Any]:
    """What makes a track file self-describing: the shards' attrs, the track's step, window size and N
    limit, and the contig lengths of the sequence it was made from."""
    import json

    return {**plan.shard_attrs(embedder), **track.attrs(), "contig_lengths": json.dumps(contigs)}


def embed_shard_track(plan: RunPlan, embedder: Any, fasta: str | os.PathLike, shard: str, step: int,
                      out: str | os.PathLike) -> int:
    """A sharded genome's dense promoter track, the part ``shard`` owns
    (:func:`genembed.data.windows.shard_track_spans`): windows every ``step`` bp in its span, embedded as
    the report would scan them (one pass along the span for a local model, else window by window),
    written to ``out`` (:func:`genembed.data.store.write_track`). Returns the number of track windows."""
    from genembed.data.genome import Genome
    from genembed.encode.scan import Scanner, scan_with_track
    from genembed.data.store import write_track
    from genembed.data.windows import shard_track_spans

    w, spec = plan.windows, plan.track(step)
    if spec is None:
        raise GenembedError(f"a track step of {step} bp is not below the stride ({w.stride} bp): no dense track to make")
    scan = Scanner.for_plan(plan, embedder)
    g = Genome(Path(fasta))
    try:
        contigs = list(g.contigs.items())
        owned = shard_track_spans(contigs, w.spec(contigs), int(shard))
        empty = np.zeros(0, dtype=np.int64)
        _, windows, track = scan_with_track(scan, g, empty.astype(str), empty, spec.size, spec.step, spec.max_n_fraction,
                                            owned)
        write_track(out, track, windows, {**track_attrs_of(plan, embedder, spec, g.contigs), "shard": shard})
    finally:
        g.close()
    log.info("shard %s: %d track windows (every %d bp) in its span", shard, len(track), step)
    return len(track)


def _track_maker(plan: RunPlan, embedder: Any, tokenizer: Any, out: Path, genome_of: dict[Path, str], spec: TrackSpec
                 ) -> Any:
    """``(files, table, rows) -> vectors`` of a pack's shard that also writes its genome's track
    windows (one pass for both); None where the model's states are not local (no pass to share).
    On a GPU out-of-memory error the genome is embedded as any shard is, without a track (the
    promoter report then scans it: :func:`genembed.encode.shards.in_one_pass`)."""
    from genembed.encode.shards import embed_windows, in_one_pass
    from genembed.data.genome import Genome
    from genembed.data.layout import TRACK
    from genembed.encode.scan import Scanner, scan_with_track
    from genembed.data.store import write_track

    scan = Scanner(embedder, tokenizer, plan.max_tokens)
    if scan.reach is None:
        return None

    def vectors_of(files: ShardFiles, table: Any, rows: Any) -> Any:
        genome = genome_of[files.out]

        def run_pass():
            fasta = Genome(out / GENOME.format(genome=genome))
            try:
                vectors, windows, track = scan_with_track(scan, fasta, table["contig"].to_numpy(),
                                                          table["start"].to_numpy(), spec.size, spec.step,
                                                          spec.max_n_fraction)
            finally:
                fasta.close()
            write_track(out / TRACK.format(genome=genome), track, windows,
                        track_attrs_of(plan, embedder, spec, fasta.contigs))
            log.info("%s: %d windows and %d track windows (every %d bp) in one pass", genome, len(vectors), len(track),
                     spec.step)
            return vectors

        return in_one_pass(f"{genome} (no track)", run_pass, lambda: embed_windows(embedder, rows, table, files.out.name))

    return vectors_of
