import numpy as np
import pytest
import torch

from facegallery import checkpoints
from facegallery.embedder import load_model
from facegallery.errors import UserError
from facegallery.training import TrainConfig, Trainer, centred, parse_duration, train


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


# ----- fine-tuning, several roots, distillation ---------------------------------------------------


def _stage_weights(model_sd: dict, prefixes: tuple[str, ...]) -> dict:
    return {k: v for k, v in model_sd.items() if k.startswith(prefixes)}


def test_fine_tuning_the_head_leaves_the_rest_and_its_statistics_untouched(face_tree, tmp_path, tiny_model_dir):
    cfg = TrainConfig.fine_tune(
        str(face_tree), str(tmp_path / "ft"), str(tiny_model_dir), train_layers="head",
        steps=4, p=3, k=2, eval_every=2, checkpoint_every=2, val_impostors=1, val_fraction=0.2, warmup=1, threads=1,
    )  # fmt: skip
    out = train(cfg, progress=False, log=lambda s: None)
    before, after = checkpoints.load_weights(tiny_model_dir), checkpoints.load_weights(out / "last")
    head = ("gdc.", "fc.", "bn_out.")
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert changed and all(k.startswith(head) for k in changed)  # only the head moved ...
    assert not any(k.endswith(("running_mean", "running_var")) for k in changed)  # ... and no BN statistics
    conf = checkpoints.read_config(out)
    assert conf["init"] == {"model": str(tiny_model_dir), "name": "tiny", "train_layers": "head"}
    assert [h["step"] for h in conf["history"]] == [0, 2, 4]  # the starting model is validated first
    assert conf["train_config"]["lr"] == 1e-3 and conf["train_config"]["miner"] == "semi-hard"
    assert conf["crop"] == 1.0 and conf["template"] == "pubfig83-crop"  # read as the starting model read photos
    assert checkpoints.load_weights(out)["fc.weight"].dtype == torch.float32  # saved in full precision
    assert load_model(out).embed(np.zeros((1, 100, 100, 3), np.uint8)).shape == (1, 128)


def test_fine_tuning_the_last_stage_moves_it_and_the_head_only(face_tree, tmp_path, tiny_model_dir):
    cfg = TrainConfig.fine_tune(
        str(face_tree), str(tmp_path / "ft"), str(tiny_model_dir), train_layers="last",
        steps=3, p=3, k=2, eval_every=3, val_impostors=1, val_fraction=0.2, warmup=1, threads=1,
    )  # fmt: skip
    t = Trainer(cfg, log=lambda s: None)
    for _ in range(3):
        t.train_step()
    before, after = checkpoints.load_weights(tiny_model_dir), t.model.state_dict()
    changed = {k for k in before if not torch.equal(before[k], after[k])}
    assert any(k.startswith("blocks.3.") for k in changed)  # resface64's last stage: its fourth block
    assert all(k.startswith(("blocks.3.", "gdc.", "fc.", "bn_out.")) for k in changed), changed


def test_resume_of_a_fine_tuning_run_continues_exactly(face_tree, tmp_path, tiny_model_dir):
    def cfg(out):
        return TrainConfig.fine_tune(
            str(face_tree), str(out), str(tiny_model_dir), train_layers="last",
            steps=6, p=3, k=2, eval_every=3, checkpoint_every=3, val_impostors=1, val_fraction=0.2, threads=1,
        )  # fmt: skip

    straight = train(cfg(tmp_path / "a"), progress=False, log=lambda s: None)
    t = Trainer(cfg(tmp_path / "b"), log=lambda s: None)
    for _ in range(3):
        t.train_step()
    t.save_last()
    resumed = Trainer(cfg(tmp_path / "b"), resume=True, log=lambda s: None)
    resumed.run(progress=False)
    a, b = checkpoints.load_weights(straight / "last"), checkpoints.load_weights(tmp_path / "b" / "last")
    assert all(torch.allclose(a[k], b[k], atol=1e-6) for k in a)


def test_bad_starting_models_are_one_line_user_errors(face_tree, tmp_path, tiny_model_dir):
    def attempt(init):
        return Trainer(TrainConfig.fine_tune(str(face_tree), str(tmp_path / "x"), str(init), steps=1), log=print)

    with pytest.raises(UserError, match="no such model"):
        attempt("no-such-model")
    other = tmp_path / "other-size"
    checkpoints.save_checkpoint(
        other, torch.nn.Linear(1, 1), {**checkpoints.read_config(tiny_model_dir), "input_size": 150}
    )
    with pytest.raises(UserError, match="150x150 input, but resface64 reads 64"):
        attempt(other)
    misfit = tmp_path / "misfit"
    checkpoints.save_checkpoint(misfit, torch.nn.Linear(1, 1), checkpoints.read_config(tiny_model_dir))
    with pytest.raises(UserError, match="weights do not fit architecture 'resface64'") as e:
        attempt(misfit)
    assert "\n" not in str(e.value)
    with pytest.raises(UserError, match="no stages"):
        Trainer(_cfg(face_tree, tmp_path / "y", arch="seed-cnn", train_layers="head"), log=print)


def test_fine_tuning_the_pretrained_default_trains_on_aligned_chips(face_tree, tmp_path):
    """dlib's ResNet reads 150x150 chips aligned by landmarks: training prepares its photos that way,
    and the result is a checkpoint of the same template with its own int8 network."""
    cfg = TrainConfig.fine_tune(
        str(face_tree), str(tmp_path / "ft"), "dlib-resnet29-v1", train_layers="head",
        steps=2, p=3, k=2, eval_every=2, val_impostors=1, val_fraction=0.2, warmup=1, threads=1,
    )  # fmt: skip
    t = Trainer(cfg, log=lambda s: None)
    assert t.pixels.shape[1:] == (150, 150, 3) and t.template.name == "dlib-chip-150-0.25"
    from PIL import Image

    from facegallery.landmarks import align_crops

    first = np.asarray(Image.open(t.train.paths[0]).convert("RGB"))
    assert np.array_equal(t.pixels[0], align_crops([first], t.template)[0])  # the embedder's own alignment
    out = t.run(progress=False)
    conf = checkpoints.read_config(out)
    assert conf["template"] == "dlib-chip-150-0.25" and conf["normalisation"].startswith("(RGB - ")
    assert conf["tta_flip"] and "CC0" in conf["licence"] and "3 million faces" in conf["training_data"]
    e = load_model(out)
    assert e.template.name == "dlib-chip-150-0.25" and e.embed(t.pixels[:2]).shape == (2, 128)


def test_several_roots_and_one_photo_people_train_together(tmp_path, make_face):
    from PIL import Image

    for root, people, shots in (("a", range(3), 4), ("b", range(3, 9), 1), ("b", [9], 2)):
        for person in people:
            d = tmp_path / root / f"id {person}"
            d.mkdir(parents=True)
            for n in range(shots):
                Image.fromarray(make_face(person, n)).save(d / f"{n + 1}.jpg")
    cfg = _cfg(tmp_path / "a", tmp_path / "m", data=[str(tmp_path / "a"), str(tmp_path / "b")], val_impostors=0)
    t = Trainer(cfg, log=lambda s: None)
    assert len(t.names) == 10 and t.sampler.singles >= 1  # one-photo people ride along for CosFace
    rows, mined = t.recipe.rows(t)
    assert set(t.labels[rows[:mined]]) <= {0, 1, 2, 9} and set(t.labels[rows[mined:]]) <= set(range(3, 9))
    out = t.run(progress=False)
    conf = checkpoints.read_config(out)
    assert len(conf["label_map"]) == 10 and str(tmp_path / "b") in conf["training_data"]


def test_teacher_targets_are_centred_unit_rows():
    """A cone of embeddings (every pair alike) becomes one where only the alike stay alike."""
    g = np.random.default_rng(0)
    n, k = 40, 3  # 40 people, 3 photos each, far off-centre
    emb = np.repeat(g.normal(size=(n, 16)), k, axis=0) + 0.3 * g.normal(size=(n * k, 16)) + 8.0
    emb /= np.linalg.norm(emb, axis=1, keepdims=True)
    person = np.kron(np.eye(n), np.ones((k, k))).astype(bool)
    same, strangers = person & ~np.eye(n * k, dtype=bool), ~person
    assert (emb @ emb.T)[strangers].min() > 0.9  # all alike before
    c = centred(emb)
    assert np.allclose(np.linalg.norm(c, axis=1), 1) and c.mean(0) @ c.mean(0) < 0.01  # was ~0.99
    assert (c @ c.T)[same].mean() > 0.5 and abs((c @ c.T)[strangers].mean()) < 0.05


def test_relational_distillation_teaches_the_teachers_similarities(face_tree, tmp_path, tiny_model_dir):
    """With the relation term alone the student learns how alike the teacher finds each pair of photos
    (the gap between the two similarity matrices halves) while its own coordinates stay its own."""
    cfg = _cfg(face_tree, tmp_path / "s", teacher=str(tiny_model_dir), relation_weight=1.0, triplet_weight=0.0,
               cosface_weight=0.0, steps=40, lr=5e-3, warmup=0, augment=False, eval_every=100, seed=1)  # fmt: skip
    t = Trainer(cfg, log=lambda s: None)
    target = t.teacher @ t.teacher.T

    def gap() -> float:
        e = t._embed(t.pixels)
        return float(((e @ e.T - target) ** 2).mean())

    start = gap()
    for _ in range(40):
        m = t.train_step()
    assert m["relation"] > 0 and m["distill"] == 0.0
    assert gap() < 0.5 * start
    assert float(((t._embed(t.pixels) - t.teacher) ** 2).sum(1).mean()) > 0.5  # not the teacher's coordinates


def test_training_runs_on_the_device_it_is_given_and_records_it(face_tree, tmp_path):
    from facegallery.training import resolve_device

    assert resolve_device("cpu").type == "cpu"
    assert resolve_device("auto").type == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UserError, match="unknown --device 'tpu'"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UserError, match="no CUDA GPU"):
            resolve_device("cuda")
    out = train(_cfg(face_tree, tmp_path / "m", steps=2, device="cpu"), progress=False, log=lambda s: None)
    assert checkpoints.read_config(out)["device"] == "cpu"


def test_distillation_pulls_the_student_towards_cached_teacher_embeddings(face_tree, tmp_path, tiny_model_dir):
    logs = []
    cfg = _cfg(face_tree, tmp_path / "s", teacher=str(tiny_model_dir), distill_weight=1.0, triplet_weight=0.0,
               cosface_weight=0.0, steps=30, lr=5e-3, warmup=0, augment=False, eval_every=100, seed=1)  # fmt: skip
    t = Trainer(cfg, log=logs.append)
    assert any("embedded" in line for line in logs) and t.teacher.shape == (len(t.train), 128)
    from PIL import Image

    photos = [np.asarray(Image.open(path).convert("RGB")) for path in t.train.paths]
    assert np.allclose(t.teacher, centred(load_model(tiny_model_dir).embed(photos)), atol=1e-5)  # row by row
    gap = lambda: float(((t._embed(t.pixels) - t.teacher) ** 2).sum(1).mean())  # noqa: E731
    start = gap()  # a student of another seed starts far from the teacher (~2.3, nearly orthogonal)
    for _ in range(30):
        t.train_step()
    assert gap() < 0.5 * start
    logs.clear()
    Trainer(cfg, log=logs.append)
    assert any("read from" in line for line in logs)  # computed once, then read from the cache
