"""The hopper (multi-hop pointer chasing) training script: an earlier default-model attempt, kept runnable."""
from backend.models import load_bundle, load_model


def test_training_smoke(tmp_path):
    from backend import train

    out = tmp_path / "tiny"
    log = train.main(["--out", str(out), "--max-steps", "3", "--eval-every", "3", "--eval-items", "2",
                      "--d", "32", "--heads", "2", "--inter", "64", "--progress-weight", "0.5", "--no-progress"])
    assert log["steps_done"] == 3
    model = load_model(out)
    assert model.config.n_embd == 32 and model.config.n_layers_in_recurrent_block == 1
    bundle = load_bundle(out)
    assert bundle.template.readout == "option"
    assert (out / "tokenizer.json").is_file()
