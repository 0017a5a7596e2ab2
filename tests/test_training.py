import numpy as np
import pytest
import torch

from facegallery import checkpoints
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.training import TrainConfig, Trainer, parse_duration, train


def _cfg(tree, out, **kw):
    base = dict(
        data=str(tree),
        out=str(out),
        steps=6,
        p=3,
        k=2,
        eval_every=3,
        checkpoint_every=3,
        val_impostors=1,
        val_fraction=0.2,
        warmup=2,
        threads=1,
    )
    base.update(kw)
    return TrainConfig(**base)


def test_training_writes_a_loadable_checkpoint_with_label_map_and_threshold(face_tree, tmp_path):
    out = train(_cfg(face_tree, tmp_path / "m"), progress=False, log=lambda s: None)
    cfg = checkpoints.read_config(out)
    assert cfg["arch"] == "resface64" and len(cfg["label_map"]) == 3  # one person held out as impostor
    assert cfg["split"]["impostor_names"][0] not in cfg["label_map"]
    assert cfg["threshold"] is not None and cfg["data_fingerprint"]
    assert [h["step"] for h in cfg["history"]] == [3, 6]
    emb = load_model(out).embed(np.zeros((2, 100, 100, 3), np.uint8))
    assert emb.shape == (2, 128) and np.allclose(np.linalg.norm(emb, axis=1), 1, atol=1e-5)


def test_training_on_every_identity_selects_by_top1_and_calibrates_by_accept_rate(face_tree, tmp_path):
    out = train(_cfg(face_tree, tmp_path / "m", val_impostors=0, accept_rate=0.5), progress=False, log=lambda s: None)
    cfg = checkpoints.read_config(out)
    assert len(cfg["label_map"]) == 4 and cfg["split"]["impostor_names"] == []
    assert all(h["val_open"] is None for h in cfg["history"])
    best = max(cfg["history"], key=lambda h: h["val_top1"])  # the first of the best, as kept
    assert cfg["selected_step"] == best["step"] and cfg["threshold"] == best["val_threshold"]
    assert cfg["int8"]["validation_int8"]["open"] is None and cfg["int8"]["threshold"] > 0


def test_resume_continues_exactly(face_tree, tmp_path):
    straight = train(_cfg(face_tree, tmp_path / "a"), progress=False, log=lambda s: None)
    t = Trainer(_cfg(face_tree, tmp_path / "b"), log=lambda s: None)
    for _ in range(3):
        t.train_step()
    t.save_last()  # as if interrupted after step 3
    resumed = Trainer(_cfg(face_tree, tmp_path / "b"), resume=True, log=lambda s: None)
    assert resumed.step == 3
    resumed.run(progress=False)
    a = checkpoints.load_weights(straight / "last")
    b = checkpoints.load_weights(tmp_path / "b" / "last")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.allclose(a[k], b[k], atol=1e-6), k


def test_same_seed_same_model(face_tree, tmp_path):
    a = train(_cfg(face_tree, tmp_path / "a", steps=3), progress=False, log=lambda s: None)
    b = train(_cfg(face_tree, tmp_path / "b", steps=3), progress=False, log=lambda s: None)
    wa, wb = checkpoints.load_weights(a / "last"), checkpoints.load_weights(b / "last")
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_spread_term_is_reported_and_changes_the_update(face_tree, tmp_path):
    plain = Trainer(_cfg(face_tree, tmp_path / "a"), log=lambda s: None)
    spread = Trainer(_cfg(face_tree, tmp_path / "b", spread_weight=50.0), log=lambda s: None)
    assert plain.train_step()["gor"] == 0.0
    assert spread.train_step()["gor"] > 0.0
    wa, wb = plain.model.state_dict(), spread.model.state_dict()
    assert any(not torch.equal(wa[k], wb[k]) for k in wa)


def test_original_recipe_runs_on_seed_cnn(face_tree, tmp_path):
    cfg = TrainConfig.original(
        str(face_tree),
        str(tmp_path / "s"),
        steps=2,
        p=2,
        k=2,
        eval_every=2,
        val_impostors=1,
        val_fraction=0.2,
        threads=1,
    )
    t = Trainer(cfg, log=lambda s: None)
    m = t.train_step()
    assert m["cosface"] == 0.0 and m["triplet"] >= 0
    assert t.size == 128 and isinstance(t.opt, torch.optim.Adam)


def test_budget_run_replans_when_the_machine_slows(face_tree, tmp_path, monkeypatch):
    """A fake clock: steps take 0.1 s, then from step 40 on 0.3 s; the 10 s budget first fixes ~92
    steps (8% kept for validations, which take no time on this clock), re-plans to ~100 at the first
    validation, then fewer once the slowdown shows, so that the run still ends on time."""
    from facegallery import training

    t = Trainer(
        _cfg(face_tree, tmp_path / "r", steps=None, budget_s=10.0, eval_every=20, checkpoint_every=1000),
        log=lambda s: None,
    )
    now = [0.0]
    step = t.train_step

    def slow_step():
        now[0] += 0.1 if t.step < 40 else 0.3
        return step()

    monkeypatch.setattr(training, "_clock", lambda: now[0])
    monkeypatch.setattr(t, "train_step", slow_step)
    t.run(progress=False)
    cfg = checkpoints.read_config(tmp_path / "r")
    assert cfg["replans"][0][0] == 20 and 98 <= cfg["replans"][0][1] <= 100
    assert cfg["replans"][1][0] == 60 and cfg["replans"][1][1] < 80  # the first validation after the slowdown
    assert cfg["total_steps"] == t.step == cfg["replans"][-1][1]
    assert 9.5 <= t.train_seconds <= 10.6  # ends on time, within a step or two (a fixed count: ~25 s)


@pytest.mark.parametrize("seconds_per_step", [0.0101, 0.015, 0.2])
def test_budget_is_planned_from_timed_steps_whenever_5_percent_is_spent(
    face_tree, tmp_path, monkeypatch, seconds_per_step
):
    """A fake clock on which 5% of a 2 s budget is first spent at step 10 (0.0101 s/step: once a
    ZeroDivisionError, the timing window restarting at the very step that ends it), at step 7, or by
    step 1: the length planned is the budget over the pace, less the 8% kept for validations."""
    from facegallery import training

    class Planned(Exception):
        pass

    t = Trainer(
        _cfg(face_tree, tmp_path / "z", steps=None, budget_s=2.0, eval_every=1000, checkpoint_every=1000),
        log=lambda s: None,
    )
    now = [0.0]
    step = t.train_step

    def timed_step():
        if t.total is not None:
            raise Planned
        now[0] += seconds_per_step
        return step()

    monkeypatch.setattr(training, "_clock", lambda: now[0])
    monkeypatch.setattr(t, "train_step", timed_step)
    with pytest.raises(Planned):
        t.run(progress=False)
    assert t.total == pytest.approx(2.0 / (seconds_per_step * 1.08), abs=1.5)


def test_bad_settings_are_user_errors(face_tree, tmp_path):
    with pytest.raises(UserError):
        Trainer(_cfg(face_tree, tmp_path / "x", miner="nope"))
    with pytest.raises(UserError):
        Trainer(_cfg(face_tree, tmp_path / "x", steps=None))
    with pytest.raises(UserError):
        parse_duration("forever")
    assert parse_duration("45m") == 2700 and parse_duration("1.5h") == 5400


def test_time_budget_fixes_the_step_count_and_records_it(face_tree, tmp_path):
    cfg = _cfg(face_tree, tmp_path / "t", steps=None, budget_s=3.0, eval_every=1000, checkpoint_every=1000)
    out = train(cfg, progress=False, log=lambda s: None)
    saved = checkpoints.read_config(out)
    assert saved["total_steps"] > 4 and saved["steps"] == saved["total_steps"]
    assert saved["train_config"]["budget_s"] == 3.0 and saved["train_config"]["steps"] is None


def test_augmentation_is_seeded_and_keeps_range():
    from facegallery.training import augment_batch

    x = torch.rand(16, 3, 32, 32)
    for strong in (False, True):
        a = augment_batch(x.clone(), torch.Generator().manual_seed(1), strong)
        b = augment_batch(x.clone(), torch.Generator().manual_seed(1), strong)
        assert torch.equal(a, b) and a.shape == x.shape
        assert float(a.min()) >= 0 and float(a.max()) <= 1 and not torch.allclose(a, x)
