"""dlib's MMOD detector network: a synthetic file in dlib's format reads back into the same computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from facegallery.errors import UserError
from facegallery.models.dlib_mmod import CONVS, from_dat


def write_mmod(w, convs: list[dict], version: str = "input_rgb_image_pyramid") -> bytes:
    """A whole MMOD file: loss_mmod_ (options v1) over con [bn_con2 relu] layers on an image pyramid."""
    w.int(1).str("loss_mmod_").int(1).int(80).int(80).float(1.0).float(1.0).float(0.5)
    w.float(0.25).float(1.0).float(0.5).float(1.0)  # nms (iou, covered), ignore (iou, covered)
    n_layers = sum(1 if "bn" not in c else 3 for c in convs)
    for _ in range(n_layers - 1):
        w.int(2)
    w.int(3).str(version).float(122.782).float(117.001).float(104.298)
    if version.endswith("2"):
        w.int(4).int(5)
    first = True
    for c in convs:
        wt, b = c["weight"], c["bias"]
        w.str("con_4").tensor(np.concatenate([wt.ravel(), b.ravel()]))
        k, s = wt.shape[2], c["stride"]
        for v in (wt.shape[0], k, k, s, s, k // 2 if s == 1 else 0, k // 2 if s == 1 else 0):
            w.int(v)
        w.alias(*wt.shape).alias(1, wt.shape[0], 1, 1)
        for v in (1.0, 1.0, 1.0, 0.0):
            w.float(v)
        w.wrapper_state(input_side=first)
        first = False
        if "bn" in c:
            g, beta, mean, var = c["bn"]
            ch = len(g)
            w.str("bn_con2").tensor(np.concatenate([g, beta])).alias(1, ch, 1, 1).alias(1, ch, 1, 1)
            w.tensor(np.zeros(ch, np.float32)).tensor(np.ones(ch, np.float32))  # batch means, inverse stds
            w.tensor(mean).tensor(var).int(100).int(100)
            for v in (1.0, 1.0, 1.0, 0.0):
                w.float(v)
            w.float(1e-4)
            w.wrapper_state(input_side=False)
            w.str("relu_")
            w.wrapper_state(input_side=False)
    return bytes(w.out)


def random_convs(rng) -> list[dict]:
    convs, ch = [], 3
    for i, (filters, k, s) in enumerate(CONVS):
        c = {
            "weight": rng.normal(0, 0.1, (filters, ch, k, k)).astype(np.float32),
            "bias": rng.normal(0, 0.1, filters).astype(np.float32),
            "stride": s,
        }
        if i < len(CONVS) - 1:
            c["bn"] = (
                rng.uniform(0.5, 2, filters).astype(np.float32),
                rng.normal(0, 0.5, filters).astype(np.float32),
                rng.normal(0, 0.5, filters).astype(np.float32),
                rng.uniform(0.2, 3, filters).astype(np.float32),
            )
        convs.append(c)
        ch = filters
    return convs


def reference(x: torch.Tensor, convs: list[dict]) -> torch.Tensor:
    """conv, batch norm from its running statistics, relu: what dlib computes, unfolded."""
    for c in convs:
        s, k = c["stride"], c["weight"].shape[2]
        x = F.conv2d(x, torch.from_numpy(c["weight"]), torch.from_numpy(c["bias"]), s, k // 2 if s == 1 else 0)
        if "bn" in c:
            g, b, m, v = (torch.from_numpy(a) for a in c["bn"])
            x = torch.relu(F.batch_norm(x, m, v, g, b, training=False, eps=1e-4))
    return x


def test_a_synthetic_detector_reads_back_into_the_same_network(tmp_path, dat_writer):
    convs = random_convs(np.random.default_rng(0))
    path = tmp_path / "mmod.dat"
    path.write_bytes(write_mmod(dat_writer(), convs))
    model, settings = from_dat(path)
    assert settings["window_width"] == 80 and settings["nms_iou"] == pytest.approx(0.25)
    assert (settings["padding"], settings["outer_padding"]) == (10, 11)  # the first pyramid version's
    x = torch.randn(2, 3, 61, 45)
    with torch.no_grad():
        assert torch.allclose(model(x), reference(x, convs), atol=1e-4, rtol=1e-4)


def test_the_second_pyramid_version_stores_its_padding(tmp_path, dat_writer):
    path = tmp_path / "mmod2.dat"
    path.write_bytes(write_mmod(dat_writer(), random_convs(np.random.default_rng(1)), "input_rgb_image_pyramid2"))
    assert {k: from_dat(path)[1][k] for k in ("padding", "outer_padding")} == {"padding": 4, "outer_padding": 5}


def test_a_network_of_another_shape_is_refused_in_one_line(tmp_path, dat_writer):
    convs = random_convs(np.random.default_rng(2))
    convs[3]["weight"] = convs[3]["weight"][:, :, :3, :3].copy()  # a 3x3 conv where dlib's net has 5x5
    path = tmp_path / "other.dat"
    path.write_bytes(write_mmod(dat_writer(), convs))
    with pytest.raises(UserError, match="MMOD conv 3"):
        from_dat(path)
