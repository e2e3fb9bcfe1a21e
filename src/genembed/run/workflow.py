"""What the Snakemake workflow decides, as tested library functions (``workflow/rules/common.smk``
only loads the sheet, validates and wires inputs): the config's defaults, the genome sheet, shard
planning and the decision to retrain the index; and the rule scripts' logging and one-line errors."""

from __future__ import annotations

import json
import logging
import os
import sys
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable, Sequence

from genembed.errors import GenembedError, one_line
from genembed.data.layout import PACK_RECORD

PRETRAIN_KEYS = ("steps", "max_minutes", "hidden_size", "layers", "seq_bp", "batch_size")
MAX_SHARDS, MANY_SHARDS = 99_999, 2_000
PACK_BP = 100_000_000  # windows.pack_bp: genomes up to this size are embedded together, up to this much per job


def run_logged(log_path: str, step: Callable[[], Any]) -> None:
    """Run ``step`` with logging to ``log_path``; a GenembedError becomes one line and exit 1."""
    logging.basicConfig(filename=log_path, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        step()
    except (GenembedError, OSError) as exc:
        message = one_line(exc)
        logging.getLogger("genembed").error("%s", message)
        print(f"genembed: error: {message}", file=sys.stderr)
        sys.exit(1)


def default_config() -> dict[str, Any]:
    """Every optional config key with its default, read off the settings dataclasses (the one source
    of defaults: the CLI reads them too; the schema holds only types and bounds)."""
    from genembed.encode.embed import EmbedSettings
    from genembed.reports.evaluate import EvalSettings
    from genembed.search.index import IndexSettings
    from genembed.data.windows import WindowPlan
    from genembed.reports.clusters import ClusterSettings
    from genembed.reports.promoters import PromoterSettings
    from genembed.encode.tokenize import TokenizerSpec
    from genembed.encode.tune import TuneConfig

    def without(obj: Any, *keys: str) -> dict[str, Any]:
        return {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(obj).items() if k not in keys}

    tune = TuneConfig()
    return {
        "seed": 0,
        "model": {"revision": None, "trust_remote_code": False,
                  "pretrain": {"enabled": False, **{k: getattr(tune, k) for k in PRETRAIN_KEYS}}},
        "tokenizer": without(TokenizerSpec()),
        "windows": {**without(WindowPlan(), "max_bp"), "stride": "auto", "pack_bp": PACK_BP},  # half the size
        "embed": without(EmbedSettings()),
        "index": {**without(IndexSettings(), "seed"), "gpu": False},
        "clusters": without(ClusterSettings(), "upstream", "downstream", "seed"),
        "promoters": without(PromoterSettings(), "max_n_fraction", "seed"),
        "evaluate": {"enabled": True, **without(EvalSettings(), "indel_share", "seed")},
    }


def with_defaults(config: dict[str, Any], defaults: dict[str, Any] | None = None) -> dict[str, Any]:
    """``config`` with the keys it omits taken from the defaults (nested sections merged)."""
    defaults = default_config() if defaults is None else defaults
    out = dict(config)
    for key, value in defaults.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = with_defaults(out[key], value)
        elif key not in out:
            out[key] = value
    return out


def read_sheet(path: str | os.PathLike) -> list[dict[str, Any]]:
    """The genome sheet's rows (TSV: genome, fasta, optional annotation and promoters), refused when
    two genomes share an id, or when their ids hash alike (window ids carry a 31-bit hash of it)."""
    import polars as pl

    from genembed.data.windows import check_codes, check_genome_id

    line_of = _check_fields(path)
    try:
        sheet = pl.read_csv(path, separator="\t", comment_prefix="#", schema_overrides={"genome": pl.String})
    except (OSError, pl.exceptions.PolarsError) as exc:
        raise GenembedError(f"{path}: cannot read the genome sheet ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("genome", "fasta") if c not in sheet.columns]
    if missing:
        raise GenembedError(f"{path}: no {' or '.join(missing)} column (the sheet needs genome and fasta;"
                            f" it has {', '.join(sheet.columns) or 'none'})")
    if sheet.is_empty():
        raise GenembedError(f"{path}: no genomes (the sheet has a header but no rows)")
    for column in ("annotation", "promoters"):  # optional columns
        if column not in sheet.columns:
            sheet = sheet.with_columns(pl.lit(None, pl.String).alias(column))
    if "genome" in sheet.columns and sheet["genome"].is_duplicated().any():
        dup = sheet.filter(pl.col("genome").is_duplicated())["genome"].unique().sort().to_list()
        raise GenembedError(f"{path}: duplicate genome ids: {', '.join(dup)}")
    rows = sheet.to_dicts()
    for i, row in enumerate(rows):
        try:
            check_genome_id(str(row["genome"]))
        except GenembedError as exc:
            raise GenembedError(f"{path}: line {line_of[i]}: {exc}") from None
    check_codes([str(r.get("genome")) for r in rows], str(path))
    for i, row in enumerate(rows):
        fasta = Path(str(row["fasta"]))
        if row["fasta"] and not fasta.exists():
            raise GenembedError(f"{path}: line {line_of[i]}: FASTA {fasta} not found" + (
                f" (a relative path is read from the working directory, {Path.cwd()})" if not fasta.is_absolute() else ""))
    return rows


def _check_fields(path: str | os.PathLike) -> list[int]:
    """Refuse a sheet row with more tab-separated fields than its header, naming the line (fewer
    leave optional columns empty); the line number of each row."""
    try:
        lines = Path(path).read_text().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise GenembedError(f"{path}: cannot read the genome sheet ({exc})") from None
    numbered = [(n, line) for n, line in enumerate(lines, 1) if line.strip() and not line.startswith("#")]
    if not numbered:
        return []
    width = len(numbered[0][1].split("\t"))
    for n, line in numbered[1:]:
        fields = len(line.split("\t"))
        if fields > width:
            raise GenembedError(f"{path}: line {n}: {fields} tab-separated fields, but the header has {width}")
    return [n for n, _ in numbered[1:]]


def estimated_contigs(fasta: str | os.PathLike) -> list[tuple[str, int]]:
    """One contig as long as a FASTA's size suggests (gzip: 4 bp per byte; none when it is missing):
    enough to plan the index before the genome is read."""
    from genembed.data.io import is_gzip

    path = Path(fasta)
    if not path.is_file():
        return []
    return [(path.name, path.stat().st_size * (4 if is_gzip(path) else 1))]


def shard_names(genome: str, n: int, shard_size: int, warn: Callable[[str], None] | None = None) -> list[str]:
    """Names of a genome's ``n`` shards; refused past 99,999 and, past 2,000, ``warn``ed about."""
    if n > MAX_SHARDS:
        raise GenembedError(f"{genome}: {n} shards (over {MAX_SHARDS:,}); raise windows.shard_size")
    if n > MANY_SHARDS and warn:
        warn(f"{genome} has {n:,} shards of {shard_size:,} windows (3 jobs each); for large genomes raise"
             " windows.shard_size, or set it to auto (docs/scaling.md)")
    return [f"{i:05d}" for i in range(n)]


def training_genomes(info: str | os.PathLike, genomes: Sequence[str], collection: int,
                     settings: Any) -> tuple[list[str], str | None]:
    """The genomes to train the index on, and why it is retrained (None when it is not): those of
    the stored training while it still fits the collection of ``collection`` windows (so adding a
    genome does not retrain), else every genome."""
    from genembed.search.index import needs_retraining

    if not Path(info).is_file():
        return list(genomes), None
    trained = json.loads(Path(info).read_text())
    if any(g not in genomes for g in trained["genomes"]):
        why = "a genome it was trained on left the sheet"
    else:
        why = needs_retraining(trained, collection, settings)
    return (list(trained["genomes"]), None) if why is None else (list(genomes), why)


def read_packs(folder: str | os.PathLike) -> dict[str, list[str]]:
    """The packs already embedded below ``folder`` (``{pack}/pack.json``): pack name -> genomes."""
    packs = {}
    for record in sorted(Path(folder).glob(f"*/{PACK_RECORD}")):
        try:
            packs[record.parent.name] = list(json.loads(record.read_text())["genomes"])
        except (OSError, ValueError, KeyError, TypeError):
            continue  # a pack whose record is unreadable is planned again, like one never embedded
    return packs


def plan_packs(sizes: dict[str, int], packed: dict[str, list[str]], pack_bp: int) -> dict[str, list[str]]:
    """Which genomes are embedded together, one job per pack: ``sizes`` (genome -> estimated bp, in
    sheet order), ``packed`` the packs embedded before (:func:`read_packs`). A genome stays in the pack
    it was embedded in (so adding genomes redoes none of them); new genomes up to ``pack_bp`` fill new
    packs in sheet order, each up to ``pack_bp`` in all and named after its first genome; larger ones
    (and all, with ``pack_bp`` 0, including those packed before) are left out: they are cut into
    shards, one job each."""
    packs: dict[str, list[str]] = {}
    if pack_bp <= 0:
        return packs  # off: every genome sharded, also those embedded in packs before
    for name, genomes in packed.items():
        kept = [g for g in genomes if g in sizes]
        if kept:
            packs[name] = kept
    placed = {g for genomes in packs.values() for g in genomes}
    current: list[str] = []
    total = 0
    for genome, bp in sizes.items():
        if genome in placed or bp > pack_bp:
            continue
        if current and total + bp > pack_bp:
            current, total = [], 0
        if not current:
            name = genome
            while name in packs:  # the name of a pack whose first genome left the sheet
                name += "_"
            packs[name] = current
        current.append(genome)
        total += bp
    return packs
