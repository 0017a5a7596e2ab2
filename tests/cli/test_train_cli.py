from click.testing import CliRunner

from facegallery import checkpoints
from facegallery.cli import main


def test_train_command_records_the_loss_settings_it_was_given(face_tree, tmp_path):
    out = tmp_path / "m"
    r = CliRunner().invoke(main, ["train", "--data", str(face_tree), "--out", str(out), "--steps", "2",
                                  "--p", "3", "--k", "2", "--eval-every", "2", "--val-impostors", "1",
                                  "--threads", "1", "--cosface-margin", "0.1", "--cosface-scale", "16"])
    assert r.exit_code == 0, r.output
    cfg = checkpoints.read_config(out)["train_config"]
    assert (cfg["cosface_margin"], cfg["cosface_scale"], cfg["steps"]) == (0.1, 16.0, 2)
