"""genembed.run: the stages driven, from the command line (:mod:`.cli`), as workflow jobs
(:mod:`.workflow`: the Snakemake scripts' calls, default config) and in one process
(:mod:`.pipeline`). The only layer that may import all the others.
"""
