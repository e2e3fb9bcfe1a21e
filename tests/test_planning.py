"""Planning at human scale: the dry-run lays out every shard of GRCh38 from its .fai, before any job."""

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from genembed.errors import GenembedError
from genembed.data.genome import prepare_fasta, read_fai
from genembed.data.windows import WindowPlan, shard_count
from helpers import REPO

GRCH38 = REPO / "resources/plans/GRCh38.fai"


def job_counts(d: Path) -> dict[str, int]:
    res = subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-d", str(d), "-n",
                          "--quiet", "rules"], capture_output=True, text=True, timeout=600)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-2000:]
    return {m[1]: int(m[2]) for m in re.finditer(r"^(\w+)\s+(\d+)\s*$", res.stdout, re.M)}


@pytest.mark.workflow
def test_a_human_genome_is_planned_shard_by_shard_from_its_fai_before_any_job(tmp_path):
    fasta = tmp_path / "GRCh38.fa"
    fasta.touch()  # the plan reads only the .fai beside it (where samtools faidx puts it), never the sequence
    shutil.copy(GRCH38, f"{fasta}.fai")
    windows = {"size": 1000, "stride": 1000, "max_n_fraction": 0.1, "shard_size": 50_000}
    cfg = yaml.safe_load((REPO / "config/config.yaml").read_text())
    cfg.update(model={"path": str(REPO / "resources/models/genembed-conv")}, windows=windows)
    (tmp_path / "config").mkdir()
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    (tmp_path / "config/genomes.tsv").write_text(f"genome\tfasta\nGRCh38\t{fasta}\n")

    jobs = job_counts(tmp_path)
    contigs = read_fai(GRCH38)
    assert len(contigs) == 195 and sum(n for _, n in contigs) == 3_099_922_541
    n = shard_count(contigs, WindowPlan.from_config(windows).spec())
    assert n == 62  # 3.10M windows of 1 kb in shards of 50,000
    assert jobs["prepare_genome"] == 1 and jobs["windows"] == jobs["tokenize"] == jobs["embed"] == n
    assert jobs["train_index"] == jobs["add_to_index"] == jobs["merge_index"] == 1
    assert not (tmp_path / "results").exists()

    # the default windows (500 bp, stride 250) and shard_size auto: 12.4M windows in 496 shards of 25,000
    cfg["windows"] = yaml.safe_load((REPO / "config/config.yaml").read_text())["windows"]
    assert cfg["windows"]["shard_size"] == "auto"
    (tmp_path / "config/config.yaml").write_text(yaml.safe_dump(cfg))
    jobs = job_counts(tmp_path)
    assert WindowPlan.from_config(cfg["windows"]).spec(contigs).shard_size == 25_000
    assert jobs["windows"] == jobs["tokenize"] == jobs["embed"] == 496


def test_a_fai_beside_the_fasta_that_disagrees_with_it_is_refused(tmp_path, ecoli_slice):
    fasta = tmp_path / "g.fa"
    shutil.copy(ecoli_slice[0], fasta)
    contigs = prepare_fasta(fasta, tmp_path / "ok/genome.fa.gz")
    name, length = contigs[0]
    Path(f"{fasta}.fai").write_text(f"{name}\t{length - 1}\t6\t60\t61\n")
    with pytest.raises(GenembedError, match=rf"g.fa.fai: does not match g.fa \(it has {name} {length - 1:,} bp, the FASTA"
                                            rf" {name} {length:,} bp\); delete or regenerate it"):
        prepare_fasta(fasta, tmp_path / "out/genome.fa.gz")
    assert not (tmp_path / "out").exists() or not os.listdir(tmp_path / "out")
