"""Shared fixtures: real E. coli sequence slices and tiny real transformer models."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EXAMPLE_FASTA = REPO / "resources/example/ecoli_k12_mg1655.fna.gz"
EXAMPLE_GFF = REPO / "resources/example/ecoli_k12_mg1655.gff.gz"
SLICE_BP = 200_000


@pytest.fixture(scope="session")
def ecoli_sequence() -> bytes:
    """The first 200 kb of the bundled E. coli K-12 genome (real sequence)."""
    with gzip.open(EXAMPLE_FASTA, "rb") as fh:
        lines = fh.read().split(b"\n")
    return b"".join(lines[1:])[:SLICE_BP]


@pytest.fixture(scope="session")
def ecoli_slice(tmp_path_factory, ecoli_sequence) -> tuple[Path, Path]:
    """A 200-kb E. coli FASTA (plain gzip, as users hand it) and the GFF features inside it."""
    d = tmp_path_factory.mktemp("ecoli")
    fasta = d / "ecoli_200k.fa.gz"
    with gzip.open(fasta, "wb") as fh:
        fh.write(b">NC_000913.3 E. coli K-12 MG1655, first 200 kb\n")
        for i in range(0, len(ecoli_sequence), 70):
            fh.write(ecoli_sequence[i : i + 70] + b"\n")
    gff = d / "ecoli_200k.gff"
    with gzip.open(EXAMPLE_GFF, "rt") as src, open(gff, "w") as out:
        for line in src:
            if line.startswith("#"):
                out.write(line if not line.startswith("##sequence-region") else f"##sequence-region NC_000913.3 1 {SLICE_BP}\n")
                continue
            f = line.split("\t")
            if len(f) == 9 and f[2] != "region" and int(f[4]) <= SLICE_BP:
                out.write(line)
    return fasta, gff


def make_tiny_bert(folder: Path, hidden: int = 32, layers: int = 2, seed: int = 0) -> Path:
    """A real (randomly initialised) BERT with genembed's 6-mer tokenizer, saved as a HF folder."""
    import torch
    from transformers import BertConfig, BertForMaskedLM

    from genembed.pretrain import build_tokenizer

    torch.manual_seed(seed)
    tok = build_tokenizer(6, 512)
    cfg = BertConfig(vocab_size=len(tok), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=2,
                     intermediate_size=hidden * 2, max_position_embeddings=512, pad_token_id=tok.pad_token_id)
    BertForMaskedLM(cfg).save_pretrained(folder)
    tok.save_pretrained(folder)
    return folder


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def prepared_slice(tmp_path_factory, ecoli_slice) -> Path:
    from genembed.genome import prepare_fasta

    out = tmp_path_factory.mktemp("prepared") / "genome.fa.gz"
    prepare_fasta(ecoli_slice[0], out)
    return out


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, prepared_slice, tiny_bert):
    """Windows, tokens, embeddings and an index for the 200-kb slice, made by the library stages."""
    from genembed.embed import EmbedSettings, Embedder, embed_shard
    from genembed.index import build_index
    from genembed.models import ModelSpec, describe, load_tokenizer
    from genembed.tokenize import KmerTokenizer, tokenize_shard
    from genembed.windows import WindowSpec, write_shard_windows

    d = tmp_path_factory.mktemp("pipeline")
    spec = WindowSpec(size=1000, stride=1000, shard_size=120)
    model_spec = ModelSpec(str(tiny_bert))
    model = describe(model_spec)
    tok = KmerTokenizer.from_hf(load_tokenizer(tiny_bert, model_spec), 6, False)
    embedder = Embedder(model_spec, EmbedSettings())
    windows, shards = [], []
    for shard in range(2):
        w, e = d / f"w{shard}.parquet", d / f"e{shard}.h5"
        write_shard_windows("ecoli", prepared_slice, spec, shard, w)
        tokenize_shard(w, prepared_slice, tok, model["max_tokens"], d / f"t{shard}.npy", d / f"o{shard}.npy")
        embed_shard(w, d / f"t{shard}.npy", d / f"o{shard}.npy", embedder, model, "kmer(k=6,non-overlapping)",
                    spec.size, spec.stride, e)
        windows.append(w)
        shards.append(e)
    build_index(shards, windows, d / "index", model, {"ecoli": str(prepared_slice)})
    return {"dir": d / "index", "windows": windows, "shards": shards, "model": model}


def embed_genome(name: str, fasta: Path, folder: Path, model_dir: Path, size: int = 1000, shard_size: int = 600):
    """Windows, tokens and embeddings of a whole prepared genome with a model folder, by the library stages."""
    from genembed.embed import EmbedSettings, Embedder, embed_shard
    from genembed.models import ModelSpec, describe, load_tokenizer
    from genembed.reports.data import genome_contigs
    from genembed.tokenize import KmerTokenizer, tokenize_shard
    from genembed.windows import WindowSpec, shard_count, write_shard_windows

    spec = WindowSpec(size=size, stride=size, shard_size=shard_size)
    model_spec = ModelSpec(str(model_dir))
    model = describe(model_spec)
    tok = KmerTokenizer.from_hf(load_tokenizer(model_dir, model_spec), 6, False)
    embedder = Embedder(model_spec, EmbedSettings())
    windows, shards = [], []
    for shard in range(shard_count(list(genome_contigs(fasta).items()), spec)):
        w, e = folder / f"{name}.{shard}.parquet", folder / f"{name}.{shard}.h5"
        write_shard_windows(name, fasta, spec, shard, w)
        tokenize_shard(w, fasta, tok, model["max_tokens"], folder / f"t{shard}.npy", folder / f"o{shard}.npy")
        embed_shard(w, folder / f"t{shard}.npy", folder / f"o{shard}.npy", embedder, model, "kmer", size, size, e)
        windows.append(w)
        shards.append(e)
    return windows, shards


@pytest.fixture(scope="session")
def model_org_inputs(tmp_path_factory, tiny_bert):
    """The bundled C. elegans and A. thaliana 1% slices (many contigs, introns), prepared and embedded
    in 1-kb windows, as report inputs with their real GFF3 annotation."""
    from genembed.genome import prepare_fasta
    from genembed.reports.data import GenomeInputs

    out = []
    for name in ("C.elegans", "A.thaliana"):
        d = tmp_path_factory.mktemp(name)
        fasta = d / "genome.fa.gz"
        prepare_fasta(REPO / f"resources/example/{name}.fa.gz", fasta)
        windows, shards = embed_genome(name, fasta, d, tiny_bert)
        out.append(GenomeInputs(name, fasta, REPO / f"resources/example/{name}.gff.gz", windows, shards))
    return out


@pytest.fixture(scope="session")
def custom_code_model(tmp_path_factory) -> Path:
    """A real model folder whose architecture lives in its own modeling_dna.py (trust_remote_code)."""
    from model_zoo import masked_lm_custom_code

    return masked_lm_custom_code(tmp_path_factory.mktemp("models") / "custom-dna")


def small_workflow(d: Path, ecoli_slice) -> Path:
    """A workflow folder for the 200-kb slice in 1-kb windows (2 shards), the bundled model, fp32."""
    import yaml

    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg.update(model={"path": str(REPO / "resources/models/genembed-conv")},
               windows={"size": 1000, "stride": 1000, "shard_size": 100}, embed={"precision": "fp32"},
               clusters={"k": 3, "umap_sample": 150}, promoters={"bootstrap": 100})
    (d / "config").mkdir(parents=True, exist_ok=True)
    (d / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    (d / "config/genomes.tsv").write_text(f"genome\tfasta\tannotation\neco\t{ecoli_slice[0]}\t{ecoli_slice[1]}\n")
    return d


@pytest.fixture(scope="session")
def small_workflow_run(tmp_path_factory, ecoli_slice) -> Path:
    """The small workflow run locally, uninterrupted: what the SLURM and kill -9 runs must equal."""
    import subprocess
    import sys

    d = small_workflow(tmp_path_factory.mktemp("local_run"), ecoli_slice)
    subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(d), "--cores", "2"],
                   capture_output=True, text=True, timeout=900, check=True)
    return d
