"""Snakemake adapter: the embeddings against 4-mer counts and GC content on sampled windows."""
import json
from pathlib import Path

from genembed.embed import EmbedSettings
from genembed.evaluate import EvalSettings, evaluate_model
from genembed.models import ModelSpec
from genembed.tokenize import TokenizerSpec
from genembed.workflow import run_logged


def main() -> None:
    plan = json.loads(Path(snakemake.input.plan).read_text())
    spec = ModelSpec.from_config({**snakemake.params.model, "path": plan["folder"]})
    ev = snakemake.params.evaluate
    settings = EvalSettings(windows=ev["windows"], mutation_rates=tuple(ev["mutation_rates"]), bootstrap=ev["bootstrap"],
                            seed=snakemake.params.seed)
    windows = plan["windows"]
    promoters = Path(snakemake.input.promoters[0]).parent if snakemake.input.promoters else None
    evaluate_model(snakemake.params.fastas, spec, TokenizerSpec.parse(plan["tokenizer"]),
                   EmbedSettings.from_config(snakemake.params.embed), int(windows["size"]), int(windows["stride"]),
                   Path(snakemake.output.html).parent, settings, float(windows["max_n_fraction"]), promoters)


run_logged(snakemake.log[0], main)
