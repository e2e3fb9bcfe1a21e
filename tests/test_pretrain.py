import json

from genembed.cli import main
from genembed.models import ModelSpec, load_model
from genembed.plan import RunPlan
from genembed.tokenize import TokenizerSpec


def test_pretrain_command_saves_a_loadable_hf_model_with_a_model_card(tmp_path, ecoli_sequence):
    # N runs and ambiguity codes make token counts differ between samples: batches are padded
    seq = ecoli_sequence[:20_000].replace(b"GATC", b"NNNN").replace(b"CCAGG", b"CCRGG")
    fasta = tmp_path / "gappy.fa"
    fasta.write_bytes(b">chr1\n" + seq + b"\n")
    out = tmp_path / "model"
    rc = main(["pretrain", "--fasta", str(fasta), "--out", str(out), "--steps", "4", "--hidden-size", "32",
               "--layers", "1", "--heads", "2", "--seq-bp", "300", "--batch-size", "4"])
    assert rc == 0
    assert {"config.json", "model.safetensors", "tokenizer.json", "README.md", "training.json"} <= {p.name for p in out.iterdir()}
    stats = json.loads((out / "training.json").read_text())
    assert stats["steps"] == 4 and stats["final_loss"] > 0
    card = (out / "README.md").read_text()
    assert "final loss" in card and "`gappy.fa.gz`: 20,000 bp" in card
    model = load_model(out, ModelSpec(str(out)))
    assert model.config.hidden_size == 32 and type(model).__name__ == "BertModel"
    assert RunPlan.make(ModelSpec(str(out)), TokenizerSpec("hf"), {}).max_tokens == 512


def test_pretraining_sequences_longer_than_the_model_are_refused(tmp_path, ecoli_slice, capsys):
    rc = main(["pretrain", "--fasta", str(ecoli_slice[0]), "--out", str(tmp_path / "m"), "--seq-bp", "4000"])
    assert rc == 1 and "need more than 512 tokens" in capsys.readouterr().err
    assert not (tmp_path / "m").exists()
