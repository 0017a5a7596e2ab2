"""Data-parallel training over local processes (gloo), as ``--procs`` and torchrun run it."""

import os
import subprocess
import sys
import textwrap
import time

import pytest
import torch

from facegallery import checkpoints
from facegallery.errors import UserError
from facegallery.training import TrainConfig, train_processes

HELPER = '''
import hashlib
from facegallery.training import Trainer
from facegallery import distributed


def interrupted(cfg, steps):
    """Train ``steps`` steps in every process, check the ranks' parameters agree (BatchNorm's running
    statistics are local until DDP re-broadcasts rank 0's at the next forward), save OUT/last, stop."""
    t = Trainer(cfg, log=lambda s: None)
    for _ in range(steps):
        t.train_step()
    digest = hashlib.sha1(b"".join(v.detach().numpy().tobytes() for v in t.model.parameters())).hexdigest()
    assert len(set(t.world.gather(digest))) == 1, "ranks hold different weights"
    t.save_last()
    distributed.leave(t.world)
'''


def _cfg(tree, out, **kw):
    base = dict(
        data=str(tree),
        out=str(out),
        steps=6,
        p=2,
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


def _weights(folder):
    return checkpoints.load_weights(folder / "last")


def test_two_processes_train_one_model_and_resume_exactly(face_tree, tmp_path, monkeypatch):
    straight = train_processes(_cfg(face_tree, tmp_path / "a"), 2, progress=False)
    cfg = checkpoints.read_config(straight)
    assert cfg["processes"] == 2 and [h["step"] for h in cfg["history"]] == [3, 6]
    assert cfg["threshold"] is not None

    (tmp_path / "helper").mkdir()
    (tmp_path / "helper" / "ddp_helper.py").write_text(textwrap.dedent(HELPER))
    monkeypatch.syspath_prepend(str(tmp_path / "helper"))
    import ddp_helper

    from facegallery import distributed

    distributed.spawn(2, ddp_helper.interrupted, _cfg(face_tree, tmp_path / "b"), 3)
    train_processes(_cfg(face_tree, tmp_path / "b"), 2, resume=True, progress=False)
    a, b = _weights(straight), _weights(tmp_path / "b")
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_two_processes_differ_from_one_but_repeat_themselves(face_tree, tmp_path):
    one = train_processes(_cfg(face_tree, tmp_path / "one", steps=3), 1, progress=False)
    two = train_processes(_cfg(face_tree, tmp_path / "two", steps=3), 2, progress=False)
    again = train_processes(_cfg(face_tree, tmp_path / "again", steps=3), 2, progress=False)
    w1, w2, w3 = _weights(one), _weights(two), _weights(again)
    assert all(torch.equal(w2[k], w3[k]) for k in w2)
    assert any(not torch.equal(w1[k], w2[k]) for k in w1)


def test_uneven_split_and_wrong_process_count_are_one_line_errors(face_tree, tmp_path):
    with pytest.raises(UserError, match="do not split evenly over 2 processes"):
        train_processes(_cfg(face_tree, tmp_path / "odd", p=3), 2, progress=False)
    train_processes(_cfg(face_tree, tmp_path / "two", steps=3), 2, progress=False)
    with pytest.raises(UserError, match="trained by 2 processes; resume it with as many"):
        train_processes(_cfg(face_tree, tmp_path / "two", steps=3), 1, resume=True, progress=False)


LINGER = """
import os
import time


def linger(folder):
    open(os.path.join(folder, str(os.getpid())), "w").close()
    time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running (a zombie nobody has reaped yet counts as gone)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


@pytest.mark.skipif(not os.path.isdir("/proc/self"), reason="reads process states from /proc")
def test_workers_end_when_the_process_that_spawned_them_is_killed(tmp_path):
    """``train --procs N`` killed from outside must not leave its workers training on (PyTorch's spawn
    asks the kernel to interrupt each worker when its parent dies)."""
    (tmp_path / "helper").mkdir()
    (tmp_path / "helper" / "linger.py").write_text(textwrap.dedent(LINGER))
    pids = tmp_path / "pids"
    pids.mkdir()
    code = f"from facegallery import distributed; import linger; distributed.spawn(2, linger.linger, {str(pids)!r})"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "helper"), os.environ.get("PYTHONPATH", "")])}
    parent = subprocess.Popen([sys.executable, "-c", code], env=env)
    try:
        deadline = time.monotonic() + 120
        while len(list(pids.iterdir())) < 2 and time.monotonic() < deadline and parent.poll() is None:
            time.sleep(0.2)
        workers = [int(p.name) for p in pids.iterdir()]
        assert len(workers) == 2 and all(map(_alive, workers))
    finally:
        parent.kill()
        parent.wait()
    deadline = time.monotonic() + 120  # a loaded CI machine: seen taking over 30 s once
    while any(map(_alive, workers)) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(map(_alive, workers))
