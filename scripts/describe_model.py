"""Snakemake adapter: the run plan (model resolved and fingerprinted, tokenizer, windows that fit it, embed settings)."""
from genembed.encode.embed import EmbedSettings
from genembed.encode.models import ModelSpec
from genembed.encode.plan import RunPlan
from genembed.encode.tokenize import TokenizerSpec
from genembed.run.workflow import run_logged

p = snakemake.params
run_logged(snakemake.log[0], lambda: RunPlan.make(
    ModelSpec(p.folder, p.revision, p.trust_remote_code), TokenizerSpec.from_config(p.tokenizer), p.windows,
    EmbedSettings.from_config(p.embed)).write(snakemake.output[0]))
