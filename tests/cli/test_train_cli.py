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


def test_fine_tuning_from_the_command_line_and_its_bad_input(face_tree, tmp_path, tiny_model_dir):
    r = _train(face_tree, tmp_path / "ft", "--init", str(tiny_model_dir), "--train-layers", "head", "--steps", "2",
               "--val-impostors", "1")  # fmt: skip
    assert r.exit_code == 0, r.output
    conf = checkpoints.read_config(tmp_path / "ft")
    assert conf["init"]["train_layers"] == "head" and conf["train_config"]["init"] == str(tiny_model_dir)
    for extra, message in (
        (["--init", "no-such-model"], "no such model"),
        (["--init", "resface64-pubfig83", "--model", "dlib-resnet29"], "a resface64 network (64x64 input), not"),
        (["--init", str(tiny_model_dir), "--crop", "0.8"], "--crop"),
        (["--init", str(tiny_model_dir), "--recipe", "original"], "original recipe"),
    ):
        r = _train(face_tree, tmp_path / "bad", "--steps", "1", "--val-impostors", "1", *extra)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (extra, r.output)
        assert len(r.output.strip().splitlines()[-1]) > 0


def test_train_pools_repeated_data_roots_and_refuses_one_without_pairs(face_tree, tmp_path, make_face):
    from PIL import Image

    lonely = tmp_path / "lonely"
    for person in range(3):
        (lonely / f"solo {person}").mkdir(parents=True)
        Image.fromarray(make_face(10 + person, 0)).save(lonely / f"solo {person}" / "1.jpg")

    def train(*roots, steps="1"):
        data = [a for root in roots for a in ("--data", str(root))]
        return CliRunner().invoke(main, ["train", *data, "--out", str(tmp_path / "m"), *SMALL, "--steps", steps])

    for roots in ([lonely], [face_tree, lonely]):
        r = train(*roots)
        assert r.exit_code == 2 and "lonely: no person with two or more photos" in r.output
    (lonely / "solo 0" / "2.jpg").write_bytes((lonely / "solo 0" / "1.jpg").read_bytes())
    r = train(face_tree, lonely, steps="2")
    assert r.exit_code == 0, r.output
    conf = checkpoints.read_config(tmp_path / "m")
    assert len(conf["label_map"]) + len(conf["split"]["impostor_names"]) == 7
    assert conf["train_config"]["data"] == [str(face_tree), str(lonely)]


def test_distillation_and_device_options_refuse_what_cannot_run(face_tree, tmp_path, tiny_model_dir):
    import torch

    r = _train(face_tree, tmp_path / "rel", "--steps", "1", "--val-impostors", "1", "--teacher", str(tiny_model_dir),
               "--relation-weight", "2", "--device", "cpu", "--cache", str(tmp_path / "cache"))  # fmt: skip
    assert r.exit_code == 0, r.output
    conf = checkpoints.read_config(tmp_path / "rel")
    assert (conf["train_config"]["relation_weight"], conf["train_config"]["distill_weight"]) == (2.0, 0.0)
    assert conf["device"] == "cpu"

    cases = [
        (["--distill-weight", "1"], "need --teacher"),
        (["--relation-weight", "1"], "need --teacher"),
        (["--device", "tpu"], "'tpu' is not one of"),
    ]
    if not torch.cuda.is_available():
        cases.append((["--device", "cuda"], "--device cuda: this PyTorch sees no CUDA GPU"))
    for extra, message in cases:
        r = _train(face_tree, tmp_path / "bad", "--steps", "1", "--val-impostors", "1", *extra)
        assert r.exit_code == 2 and message in r.output and "Traceback" not in r.output, (extra, r.output)
    assert not (tmp_path / "bad" / checkpoints.CONFIG).exists()
