import pytest
from click.testing import CliRunner

from facegallery import checkpoints
from facegallery.cli import main

#: A tiny run: 3 people x 2 photos a batch, validation every 2 steps, one thread.
SMALL = "--p 3 --k 2 --eval-every 2 --threads 1".split()


def _train(data, out, *extra: str):
    return CliRunner().invoke(main, ["train", "--data", str(data), "--out", str(out), *SMALL, *extra])


def test_train_command_records_the_loss_settings_it_was_given(face_tree, tmp_path):
    r = _train(face_tree, tmp_path / "m", "--steps", "2", "--val-impostors", "1", "--cosface-margin", "0.1",
               "--cosface-scale", "16")  # fmt: skip
    assert r.exit_code == 0, r.output
    cfg = checkpoints.read_config(tmp_path / "m")["train_config"]
    assert (cfg["cosface_margin"], cfg["cosface_scale"], cfg["steps"]) == (0.1, 16.0, 2)


def test_train_refuses_to_replace_a_trained_model_and_contradictory_lengths(face_tree, tmp_path):
    out = tmp_path / "m"
    assert _train(face_tree, out, "--steps", "2", "--val-impostors", "1").exit_code == 0
    before = (out / checkpoints.WEIGHTS).read_bytes()
    r = _train(face_tree, out, "--steps", "2", "--val-impostors", "1")
    assert r.exit_code == 2 and "--resume" in r.output and "--force" in r.output
    assert (out / checkpoints.WEIGHTS).read_bytes() == before
    assert _train(face_tree, out, "--steps", "2", "--val-impostors", "1", "--force").exit_code == 0
    for bad in (["--steps", "0"], ["--steps", "3", "--budget", "1m"]):
        r = _train(face_tree, tmp_path / "n", "--val-impostors", "1", *bad)
        assert r.exit_code == 2 and "Traceback" not in r.output and "not a checkpoint" not in r.output, bad


def test_a_small_folder_keeps_most_identities_for_training(face_tree, tmp_path):
    """4 people: the default would hold out 8 (an error) or, with 10, leave 2 to train on; it holds out
    a fifth (at least one) and says so; an explicit holdout of half the people is warned about."""
    from facegallery.training import TrainConfig, Trainer

    r = _train(face_tree, tmp_path / "m", "--steps", "2")
    assert r.exit_code == 0, r.output
    assert "holding out 1 to calibrate" in r.output
    assert len(checkpoints.read_config(tmp_path / "m")["label_map"]) == 3
    with pytest.warns(UserWarning, match="holds out 2 of 4 identities"):
        Trainer(
            TrainConfig(data=str(face_tree), out=str(tmp_path / "w"), steps=1, p=2, k=2, val_impostors=2, threads=1),
            log=lambda s: None,
        )
