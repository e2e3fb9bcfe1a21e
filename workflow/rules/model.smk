# The model: optionally pretrained here, then described once (fingerprint, limits, the windows that
# fit it) for all jobs. A checkpoint: with windows.size auto, its plan fixes how many shards there are.


rule pretrain_model:
    input:
        fastas=prepared_fastas,
    output:
        directory("results/model/pretrained"),
    params:
        settings={k: v for k, v in config["model"]["pretrain"].items() if k != "enabled"},
        seed=config["seed"],
    log:
        "logs/pretrain_model.log",
    benchmark:
        "benchmarks/logs/pretrain_model.tsv"
    conda:
        "../../envs/cpu.yaml"
    threads: 2
    resources:
        mem_mb=grow(4000),
        runtime=lambda wc: int(config["model"]["pretrain"]["max_minutes"]) + 10,
    script:
        "../../scripts/pretrain_model.py"


checkpoint describe_model:
    input:
        model_inputs,
    output:
        PLAN,
    params:
        folder=MODEL_DIR,
        revision=config["model"]["revision"],
        trust_remote_code=config["model"]["trust_remote_code"],
        tokenizer=config["tokenizer"],
        windows=WINDOW_CONFIG,
        embed={k: config["embed"][k] for k in ("pooling", "strands", "layer", "precision")},  # what shards record
    log:
        "logs/describe_model.log",
    benchmark:
        "benchmarks/logs/describe_model.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/describe_model.py"
