# genembed: genome windows -> tokens -> embeddings (HDF5 shards) -> FAISS index -> reports.
import os
import sys
from pathlib import Path

from snakemake.utils import min_version

min_version("9.0")

# The rules' scripts import the genembed package from this repository, also inside conda envs
# and cluster jobs: put src/ on the path here and in the environment the jobs inherit.
SRC = str(Path(workflow.basedir) / "src")
sys.path.insert(0, SRC)
os.environ.update(PYTHONPATH=os.pathsep.join(p for p in (SRC, os.environ.get("PYTHONPATH")) if p))


configfile: "config/config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/genomes.smk"
include: "workflow/rules/model.smk"
include: "workflow/rules/windows.smk"
include: "workflow/rules/tokenize.smk"
include: "workflow/rules/embed.smk"
include: "workflow/rules/index.smk"
include: "workflow/rules/reports.smk"


rule all:
    input:
        final_outputs(),
    default_target: True
