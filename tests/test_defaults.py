"""One source of defaults: the settings dataclasses. config/config.yaml, the config schema and the CLI
agree with them."""

from __future__ import annotations

import jsonschema
import yaml

from genembed.run.cli import build_parser
from genembed.run.workflow import default_config, with_defaults
from helpers import REPO

# keys the bundled example sets for its own genome sheet and model (not defaults)
EXAMPLE_SPECIFIC = {"genomes", "model.path", "tokenizer.kind", "tokenizer.k"}


def flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for key, value in d.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def schema_keys(node: dict, prefix: str = "") -> set[str]:
    out = set()
    for key, sub in node.get("properties", {}).items():
        out |= schema_keys(sub, f"{prefix}{key}.") if "properties" in sub else {f"{prefix}{key}"}
    return out


def test_config_yaml_lists_every_default_and_departs_only_for_the_example():
    shipped = flat(yaml.safe_load((REPO / "config/config.yaml").read_text()))
    defaults = flat(default_config())
    assert set(shipped) == set(defaults) | {"genomes", "model.path"}
    differ = {k for k in defaults if shipped[k] != defaults[k]}
    assert differ <= EXAMPLE_SPECIFIC, {k: (shipped[k], defaults[k]) for k in differ - EXAMPLE_SPECIFIC}


def test_the_schema_has_every_key_with_its_type_and_no_defaults_of_its_own():
    text = (REPO / "workflow/schemas/config.schema.yaml").read_text()
    schema = yaml.safe_load(text)
    assert schema_keys(schema) == set(flat(default_config())) | {"genomes", "model.path"}
    assert "default:" not in text
    minimal = {"genomes": "config/genomes.tsv", "model": {"path": "resources/models/genembed-conv"}}
    jsonschema.validate(with_defaults(minimal), schema)
    assert with_defaults(minimal)["evaluate"]["enabled"] is True and with_defaults(minimal)["model"]["path"]


def test_cli_options_default_to_the_config_defaults():
    d = default_config()
    parser = build_parser()
    run = vars(parser.parse_args(["embed", "--fasta", "g.fa", "--genome", "g", "--out", "o", "--model", "m"]))
    assert {k: run[k] for k in ("window", "stride", "max_n_fraction", "shard_size")} == \
        {"window": d["windows"]["size"], "stride": d["windows"]["stride"],
         "max_n_fraction": d["windows"]["max_n_fraction"], "shard_size": d["windows"]["shard_size"]}
    assert {k: run[k] for k in d["embed"]} == d["embed"]
    assert (run["tokenizer"], run["k"], run["overlap"]) == tuple(d["tokenizer"].values())
    ev = vars(parser.parse_args(["evaluate", "--fasta", "g.fa", "--out", "o", "--model", "m"]))
    assert {k: ev[k] for k in d["embed"]} == d["embed"] and ev["windows"] == d["evaluate"]["windows"]
    assert (ev["window"], ev["stride"]) == (d["windows"]["size"], d["windows"]["stride"])
    index = vars(parser.parse_args(["index", "--embeddings", "e", "--out", "o"]))
    assert {k: index[k] for k in ("type", "factory", "nprobe", "ef_search", "rerank")} == \
        {k: d["index"][k] for k in ("type", "factory", "nprobe", "ef_search", "rerank")}
    report = vars(parser.parse_args(["report", "--embeddings", "e", "--out", "o"]))
    assert (report["method"], report["k"], report["track_step"], report["seed"]) == \
        (d["clusters"]["method"], d["clusters"]["k"], d["promoters"]["track_step"], d["seed"])
    tune = vars(parser.parse_args(["tune", "--fasta", "g.fa", "--out", "o"]))
    assert {k: tune[k] for k in d["model"]["pretrain"] if k != "enabled"} == \
        {k: v for k, v in d["model"]["pretrain"].items() if k != "enabled"}
