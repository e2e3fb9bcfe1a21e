"""Shared fixtures: real E. coli sequence slices and tiny real transformer models."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest

from helpers import (
    CHROMEDRIVER, CHROMIUM, EXAMPLE_FASTA, EXAMPLE_GFF, REPO, SNAKEMAKE, default_plan, embed_genome, kmer_plan,
    make_tiny_bert, small_workflow,
)

SLICE_BP = 200_000
FIRST = ("test_slurm", "test_workflow", "test_interruptions", "test_packs")  # the longest modules


def pytest_collection_modifyitems(items):
    """The longest modules first (a stable sort: each module's own order stays): ``make test``'s workers
    take whole modules in this order, so the long ones start at once instead of one worker running
    them alone at the end."""
    rank = {name: i for i, name in enumerate(FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(FIRST)))


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


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return make_tiny_bert(tmp_path_factory.mktemp("models") / "tiny-bert")


@pytest.fixture(scope="session")
def prepared_slice(tmp_path_factory, ecoli_slice) -> Path:
    from genembed.data.genome import prepare_fasta

    out = tmp_path_factory.mktemp("prepared") / "genome.fa.gz"
    prepare_fasta(ecoli_slice[0], out)
    return out


@pytest.fixture(scope="session")
def built_index(tmp_path_factory, prepared_slice, tiny_bert):
    """The 200-kb slice embedded by the library's driver in 1-kb windows (2 shards), and its index."""
    from genembed.search.build import build_index
    from genembed.run.pipeline import embed_genome as drive

    d = tmp_path_factory.mktemp("pipeline")
    plan = kmer_plan(tiny_bert, 1000, 120)
    genome = drive(plan, prepared_slice, "ecoli", d / "results")[0]
    build_index([genome], d / "index", plan)
    return {"dir": d / "index", "windows": genome.windows, "shards": genome.shards, "plan": plan, "genome": genome}


@pytest.fixture(scope="session")
def model_org_inputs(tmp_path_factory, tiny_bert):
    """The bundled C. elegans and A. thaliana 1% slices (many contigs, introns), prepared and embedded
    in 1-kb windows, as report inputs with their real GFF3 annotation."""
    out = []
    root = tmp_path_factory.mktemp("model_orgs")
    for name in ("C.elegans", "A.thaliana"):
        genome = embed_genome(name, REPO / f"resources/example/{name}.fa.gz", root, tiny_bert)
        genome.annotation = REPO / f"resources/example/{name}.gff.gz"
        out.append(genome)
    return out


@pytest.fixture(scope="session")
def custom_code_model(tmp_path_factory) -> Path:
    """A real model folder whose architecture lives in its own modeling_dna.py (trust_remote_code)."""
    from model_zoo import masked_lm_custom_code

    return masked_lm_custom_code(tmp_path_factory.mktemp("models") / "custom-dna")


@pytest.fixture(scope="session")
def small_workflow_run(tmp_path_factory, ecoli_slice) -> Path:
    """The small workflow run locally, uninterrupted: what the SLURM and kill -9 runs must equal. Made
    once per test session: under pytest-xdist (``make test`` runs two workers) the first worker to
    ask makes it in the folder the workers share, under a file lock, and the others wait and read it."""
    import os
    import subprocess

    from filelock import FileLock

    if os.environ.get("PYTEST_XDIST_WORKER"):
        d = tmp_path_factory.getbasetemp().parent / "local_run"
    else:
        d = tmp_path_factory.mktemp("local_run")
    with FileLock(f"{d}.lock"):
        if not (d / "results/reports/promoters/promoters.html").is_file():
            small_workflow(d, ecoli_slice)
            subprocess.run(SNAKEMAKE + ["-d", str(d), "--cores", "2"], capture_output=True, text=True, timeout=900,
                           check=True)
    return d


@pytest.fixture(scope="session")
def default_index(tmp_path_factory, ecoli_slice):
    """The 200-kb slice embedded with the default config (bundled model, 500-bp windows every 250 bp)
    and indexed: ``{"dir", "results", "plan"}``."""
    from genembed.search.build import build_index
    from genembed.run.pipeline import embed_genome as drive

    d = tmp_path_factory.mktemp("default_index")
    plan = default_plan()
    genome = drive(plan, ecoli_slice[0], "eco", d / "results")[0]
    build_index([genome], d / "index", plan)
    return {"dir": d / "index", "results": d / "results", "plan": plan}


@pytest.fixture(scope="session")
def browser():
    """One headless Chromium (through the local chromedriver only)."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless", "--no-sandbox", "--disable-gpu", "--window-size=1280,1024"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()
