"""What several test modules share: paths, tiny models, genomes embedded by the library's driver, and
Snakemake runs of the workflow."""

from __future__ import annotations

import importlib.util
import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FASTA = REPO / "resources/example/ecoli_k12_mg1655.fna.gz"
EXAMPLE_GFF = REPO / "resources/example/ecoli_k12_mg1655.gff.gz"
DEFAULT_MODEL = REPO / "resources/models/genembed-conv"  # the encoder: what most tests embed with
SHIPPED_MODEL = REPO / yaml.safe_load((REPO / "config/config.yaml").read_text())["model"]["path"]  # the default config's
SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


def browser_missing() -> str | None:
    """Why headless Chromium cannot run here (None when it can)."""
    if importlib.util.find_spec("selenium") is None:
        return "selenium is not installed (pip install -c constraints.txt -e '.[test]')"
    if CHROMIUM is None or CHROMEDRIVER is None:
        what = " and ".join(n for n, p in (("chromium", CHROMIUM), ("chromedriver", CHROMEDRIVER)) if p is None)
        return f"{what} not found: install the Debian packages chromium and chromium-driver (make browser)"
    return None


def default_plan():
    """The run plan of the default config (the bundled model, 500-bp windows every 250 bp)."""
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan
    from genembed.encode.tokenize import TokenizerSpec

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    return RunPlan.make(ModelSpec(str(REPO / cfg["model"]["path"])), TokenizerSpec.from_config(cfg["tokenizer"]),
                        cfg["windows"])


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A real (randomly initialised) BERT with genembed's 6-mer tokenizer, saved as a HF folder."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from genembed.encode.tune import build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(6, 512)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


def kmer_plan(model_dir: Path, size: int = 1000, shard_size: int | str = 600, k: int = 6, **embed):
    """The run plan of a model folder with a non-overlapping k-mer tokenizer and windows without overlap."""
    from genembed.encode.embed import EmbedSettings
    from genembed.encode.models import ModelSpec
    from genembed.encode.plan import RunPlan
    from genembed.encode.tokenize import TokenizerSpec

    return RunPlan.make(ModelSpec(str(model_dir)), TokenizerSpec("kmer", k),
                        {"size": size, "stride": size, "shard_size": shard_size}, EmbedSettings(**embed))


def embed_genome(name: str, fasta: Path, root: Path, model_dir: Path, size: int = 1000, shard_size: int = 600):
    """A genome windowed, tokenized and embedded into the results folder ``root`` by the library's driver."""
    from genembed.run.pipeline import embed_genome as drive

    return drive(kmer_plan(model_dir, size, shard_size), fasta, name, root)[0]


def write_config(d: Path, sheet: str, **overrides) -> None:
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg.update(overrides)
    (d / "config").mkdir(parents=True, exist_ok=True)
    (d / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "config/genomes.tsv").write_text(sheet)


def small_workflow(d: Path, ecoli_slice) -> Path:
    """A workflow folder for the 200-kb slice in 1-kb windows (2 shards, one job each: no packing), the
    bundled model, fp32; a small evaluation (its fp32 embedding passes took half of the run's 60 s)."""
    write_config(d, f"genome\tfasta\tannotation\neco\t{ecoli_slice[0]}\t{ecoli_slice[1]}\n",
                 model={"path": str(DEFAULT_MODEL)}, windows={"size": 1000, "stride": 1000, "shard_size": 100, "pack_bp": 0},
                 embed={"precision": "fp32"}, clusters={"k": 3, "umap_sample": 150},
                 promoters={"bootstrap": 100, "track_step": 100},  # a dense track, from the shard jobs
                 evaluate={"enabled": True, "windows": 60, "mutation_rates": [0.05], "bootstrap": 100,
                           "divergence_queries": 10, "divergence_rates": [0.0, 0.2], "query_bp": 2000})
    return d


def snakemake(d: Path, *args: str, check: bool = True, timeout: int = 900) -> subprocess.CompletedProcess:
    res = subprocess.run(SNAKEMAKE + ["-d", str(d), *args], capture_output=True, text=True, timeout=timeout)
    if check and res.returncode != 0:
        raise AssertionError(res.stdout[-3000:] + res.stderr[-3000:])
    return res


def slice_fasta(path: Path, name: str, start: int, length: int) -> Path:
    import gzip

    with gzip.open(REPO / "resources/example/ecoli_k12_mg1655.fna.gz", "rb") as fh:
        seq = b"".join(fh.read().split(b"\n")[1:])[start : start + length]
    path.write_bytes(b">" + name.encode() + b"\n" + seq + b"\n")
    return path


def dry_run_jobs(d: Path, *args: str) -> list[tuple[str, dict[str, str]]]:
    """(rule, wildcards) of every job a dry-run of the whole workflow lists."""
    out = snakemake(d, "-n", *args).stdout
    jobs = []
    for block in re.split(r"\n(?:rule|localrule|checkpoint) ", out)[1:]:
        rule = block.split(":", 1)[0].strip()
        wildcards = {}
        for line in block.splitlines():
            if line.strip().startswith("wildcards:"):
                wildcards = dict(kv.split("=", 1) for kv in line.split(":", 1)[1].strip().split(", "))
        jobs.append((rule, wildcards))
    return jobs
