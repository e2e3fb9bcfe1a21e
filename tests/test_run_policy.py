"""What the workflow decides before any job, as library functions: the genome sheet, shard names,
window estimates and whether the index is retrained when genomes are added."""

from __future__ import annotations

import gzip
import json

import pytest

from genembed.errors import GenembedError
from genembed.search.index import IndexSettings
from genembed.data.windows import genome_code
from genembed.run.workflow import (estimated_contigs, plan_packs, read_packs, read_sheet, shard_names, training_genomes,
                               with_defaults)


def colliding_ids() -> tuple[str, str]:
    """Two genome ids whose 31-bit codes are equal (found by the birthday bound, about 60,000 tries)."""
    seen: dict[int, str] = {}
    i = 0
    while True:
        name = f"g{i}"
        code = genome_code(name)
        if code in seen:
            return seen[code], name
        seen[code] = name
        i += 1


def test_the_sheet_refuses_duplicate_and_colliding_genome_ids_naming_them(tmp_path):
    sheet = tmp_path / "genomes.tsv"
    sheet.write_text("genome\tfasta\nb\tb.fa\na\ta.fa\nb\tc.fa\n")
    with pytest.raises(GenembedError, match=f"{sheet}: duplicate genome ids: b$"):
        read_sheet(sheet)
    a, b = colliding_ids()
    sheet.write_text(f"genome\tfasta\n{a}\ta.fa\n{b}\tb.fa\n")
    with pytest.raises(GenembedError, match=f"genome ids {a} and {b} hash alike .*; rename one"):
        read_sheet(sheet)
    fasta = tmp_path / "a.fa"
    sheet.write_text(f"genome\tfasta\n007\t{fasta}\n")  # ids stay text; optional columns are added
    with pytest.raises(GenembedError, match=f"{sheet}: line 2: FASTA {fasta} not found$"):
        read_sheet(sheet)
    fasta.write_text(">c\nACGT\n")
    assert read_sheet(sheet) == [{"genome": "007", "fasta": str(fasta), "annotation": None, "promoters": None}]
    with pytest.raises(GenembedError, match="cannot read the genome sheet"):
        read_sheet(tmp_path / "missing.tsv")


def test_a_genome_not_yet_read_is_estimated_from_its_file_size(tmp_path):
    plain, packed = tmp_path / "g.fa", tmp_path / "g.fa.gz"
    plain.write_text(">c\n" + "ACGT" * 1000 + "\n")
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert estimated_contigs(plain) == [("g.fa", plain.stat().st_size)]
    assert estimated_contigs(packed) == [("g.fa.gz", 4 * packed.stat().st_size)]
    assert estimated_contigs(tmp_path / "missing.fa") == []


def test_shard_names_are_numbered_and_too_many_are_refused_or_warned_about():
    said = []
    assert shard_names("g", 3, 100, said.append) == ["00000", "00001", "00002"] and not said
    assert len(shard_names("g", 2_001, 100, said.append)) == 2_001 and "g has 2,001 shards" in said[0]
    with pytest.raises(GenembedError, match="g: 100000 shards"):
        shard_names("g", 100_000, 100)


def test_adding_a_genome_keeps_the_trained_index_until_the_collection_outgrows_it(tmp_path):
    info = tmp_path / "trained.json"
    settings = IndexSettings(type="ivf", retrain_factor=1.6)
    assert training_genomes(info, ["a", "b"], 400, settings) == (["a", "b"], None)  # nothing trained yet
    info.write_text(json.dumps({"family": "ivf", "dim": 32, "trained_for": 400, "genomes": ["a"]}))
    assert training_genomes(info, ["a", "b"], 600, settings) == (["a"], None)
    genomes, why = training_genomes(info, ["a", "b", "c"], 1000, settings)
    assert genomes == ["a", "b", "c"] and "outgrew the index trained for 400" in why
    genomes, why = training_genomes(info, ["b"], 300, settings)
    assert genomes == ["b"] and why == "a genome it was trained on left the sheet"


def test_a_config_takes_the_defaults_of_the_keys_it_omits():
    cfg = with_defaults({"genomes": "s.tsv", "model": {"path": "m", "pretrain": {"steps": 5}}, "embed": {"layer": -2}})
    assert cfg["model"]["pretrain"] == {**with_defaults({})["model"]["pretrain"], "steps": 5}
    assert cfg["embed"]["layer"] == -2 and cfg["embed"]["pooling"] == "mean" and cfg["model"]["revision"] is None


def test_small_genomes_fill_packs_in_sheet_order_and_large_ones_are_sharded():
    sizes = {"a": 40, "b": 50, "big": 500, "c": 30, "d": 20}
    assert plan_packs(sizes, {}, 100) == {"a": ["a", "b"], "c": ["c", "d"]}
    assert plan_packs(sizes, {}, 0) == {}  # packing off: every genome is sharded


def test_packs_embedded_before_keep_their_genomes_and_new_genomes_start_new_packs():
    before = {"a": ["a", "b"], "x": ["x", "gone"]}
    sizes = {"a": 40, "b": 50, "x": 10, "new": 5, "c": 30}
    assert plan_packs(sizes, before, 100) == {"a": ["a", "b"], "x": ["x"], "new": ["new", "c"]}
    assert plan_packs({"x": 1, "y": 1}, {"x": ["y"]}, 1) == {"x": ["y"], "x_": ["x"]}  # x's name was taken
    assert plan_packs(sizes, before, 0) == {}  # packing turned off: every genome sharded


def test_pack_records_are_read_and_unreadable_ones_planned_again(tmp_path):
    (tmp_path / "a").mkdir()
    (tmp_path / "a/pack.json").write_text(json.dumps({"genomes": ["a", "b"], "windows": 10}))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken/pack.json").write_text("{not json")
    assert read_packs(tmp_path) == {"a": ["a", "b"]}
