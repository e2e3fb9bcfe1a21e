# The model: optionally pretrained here, then described once (fingerprint, limits, the windows that
# fit it) for all jobs. A checkpoint: with windows.size auto, its plan fixes how many shards there are.


rule pretrain_model:
    input:
        fastas=lambda wc: list(prepared_fastas(wc).values()),
    output:
        directory("results/model/pretrained"),
    params:
        settings=config["model"]["pretrain"],
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
        MODEL_JSON,
    params:
        model=config["model"],
        folder=MODEL_DIR,
        tokenizer=config["tokenizer"],
        windows=config["windows"],
    log:
        "logs/describe_model.log",
    benchmark:
        "benchmarks/logs/describe_model.tsv"
    conda:
        "../../envs/cpu.yaml"
    script:
        "../../scripts/describe_model.py"
