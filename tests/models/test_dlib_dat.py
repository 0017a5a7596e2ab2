"""dlib's network file format: synthetic files written here in the same encoding, and the real one."""

from pathlib import Path

import numpy as np
import pytest
import torch

from facegallery.errors import UserError
from facegallery.models.dlib_dat import read_network
from facegallery.models.dlib_resnet import LEVELS, DlibResNet, from_dat

REAL = "dlib_face_recognition_resnet_model_v1.dat"


def write_layers(w, layers: list[tuple[str, dict]], tags: int = 0) -> bytes:
    """A whole file: loss_metric_2 over ``layers`` (kind, settings) on a 150x150 RGB input."""
    w.int(1).str("loss_metric_2").float(0.04).float(0.6)
    for _ in range(len(layers) - 1):
        w.int(2)
    for _ in range(tags):
        w.int(1)
    w.int(3)
    w.str("input_rgb_image_sized").float(122.782).float(117.001).float(104.298).int(150).int(150)
    for i, (kind, f) in enumerate(layers):
        w.str(kind)
        if kind == "con_4":
            wt, b = f["weight"], f["bias"]
            w.tensor(np.concatenate([wt.ravel(), b.ravel()]))
            for v in (wt.shape[0], wt.shape[2], wt.shape[3], f["stride"], f["stride"], f["pad"], f["pad"]):
                w.int(v)
            w.alias(*wt.shape).alias(1, wt.shape[0], 1, 1)
            for v in (1.0, 1.0, 1.0, 0.0):
                w.float(v)
        elif kind == "affine_":
            c = len(f["gamma"])
            w.tensor(np.concatenate([f["gamma"], f["beta"]])).alias(1, c, 1, 1).alias(1, c, 1, 1).int(0)
        elif kind in ("max_pool_2", "avg_pool_2"):
            for v in f["geometry"]:
                w.int(v)
        elif kind == "fc_2":
            wt = f["weight"]  # (inputs, outputs), as dlib stores it
            w.int(wt.shape[1]).int(wt.shape[0]).tensor(wt).alias(*wt.shape, 1, 1).alias(0, 0, 0, 0).int(1)
            for v in (1.0, 1.0, 1.0, 0.0):
                w.float(v)
        w.wrapper_state(input_side=i == 0)
    return bytes(w.out)


def resnet_layers(model: DlibResNet) -> list[tuple[str, dict]]:
    """dlib's layer sequence holding ``model``'s parameters (what dlib would have written)."""
    sd = {k: v.numpy() for k, v in model.state_dict().items()}

    def con(prefix, stride, pad):
        return ("con_4", {"weight": sd[f"{prefix}.weight"], "bias": sd[f"{prefix}.bias"], "stride": stride, "pad": pad})

    def aff(prefix):
        return ("affine_", {"gamma": sd[f"{prefix}.weight"], "beta": sd[f"{prefix}.bias"]})

    layers = [con("stem", 2, 0), aff("stem_bn"), ("relu_", {}), ("max_pool_2", {"geometry": (3, 3, 2, 2, 0, 0)})]
    for i, block in enumerate(model.blocks):
        p = f"blocks.{i}"
        layers += [
            con(f"{p}.conv1", 2 if block.down else 1, 0 if block.down else 1),
            aff(f"{p}.bn1"),
            ("relu_", {}),
            con(f"{p}.conv2", 1, 1),
            aff(f"{p}.bn2"),
        ]
        layers += ([("avg_pool_2", {"geometry": (2, 2, 2, 2, 0, 0)})] if block.down else []) + [
            ("add_prev_", {}),
            ("relu_", {}),
        ]
    layers += [("avg_pool_2", {"geometry": (0, 0, 1, 1, 0, 0)}), ("fc_2", {"weight": sd["fc.weight"].T.copy()})]
    return layers


def test_reader_reads_every_field_of_a_small_synthetic_file(tmp_path, dat_writer):
    rng = np.random.default_rng(0)
    wt, b = rng.normal(size=(4, 3, 3, 3)).astype(np.float32), rng.normal(size=4).astype(np.float32)
    fc = rng.normal(size=(4, 2)).astype(np.float32)
    layers = [
        ("con_4", {"weight": wt, "bias": b, "stride": 2, "pad": 0}),
        ("affine_", {"gamma": np.ones(4, np.float32), "beta": np.full(4, -0.5, np.float32)}),
        ("relu_", {}),
        ("avg_pool_2", {"geometry": (0, 0, 1, 1, 0, 0)}),
        ("fc_2", {"weight": fc}),
    ]
    path = tmp_path / "small.dat"
    path.write_bytes(write_layers(dat_writer(), layers, tags=2))
    net = read_network(path)
    assert net.loss == "loss_metric_2" and net.loss_fields["distance_threshold"] == pytest.approx(0.6)
    assert net.input_fields == {"mean": pytest.approx((122.782, 117.001, 104.298)), "rows": 150, "cols": 150}
    assert net.kinds() == ["con_4", "affine_", "relu_", "avg_pool_2", "fc_2"]
    assert net.headers == [2, 2, 2, 2, 1, 1, 3]
    con = net.layers[0]
    assert (con.fields["filters"], con.fields["stride_y"], con.fields["padding_x"]) == (4, 2, 0)
    assert np.array_equal(con.params.ravel(), np.concatenate([wt.ravel(), b]))
    assert np.array_equal(net.layers[1].params.ravel()[4:], np.full(4, -0.5, np.float32))
    assert net.layers[4].fields["outputs"] == 2 and np.array_equal(net.layers[4].params.reshape(4, 2), fc)


def test_truncated_extended_or_foreign_files_are_one_line_errors_naming_the_file(tmp_path, dat_writer):
    layers = [("relu_", {}), ("avg_pool_2", {"geometry": (0, 0, 1, 1, 0, 0)})]
    good = write_layers(dat_writer(), layers)
    cases = {
        "truncated.dat": good[:-7],
        "extended.dat": good + b"\x01\x02",
        "foreign.dat": good.replace(b"loss_metric_2", b"loss_mmod_abc"),
        "empty.dat": b"",
    }
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
        with pytest.raises(UserError) as e:
            read_network(tmp_path / name)
        assert name in str(e.value) and "\n" not in str(e.value)
    (tmp_path / "other-net.dat").write_bytes(good)  # a valid file of another network
    with pytest.raises(UserError, match="other-net.dat: not dlib's face recognition ResNet"):
        from_dat(tmp_path / "other-net.dat")


def test_a_resnet_written_in_dlibs_format_reads_back_into_the_same_network(tmp_path, dat_writer):
    torch.manual_seed(0)
    model = DlibResNet().eval()
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.uniform_(0.5, 1.5)
            bn.bias.uniform_(-0.1, 0.1)
    assert sum(n for _, n in LEVELS) + len(LEVELS) - 1 == len(model.blocks) == 14
    path = tmp_path / "resnet.dat"
    path.write_bytes(write_layers(dat_writer(), resnet_layers(model), tags=22))
    back = from_dat(path)
    x = torch.rand(2, 3, 150, 150)
    with torch.no_grad():
        assert torch.allclose(back.features(x), model.features(x), atol=1e-6)


def test_the_real_file_is_read_to_its_last_byte(dlib_models: Path):
    net = read_network(dlib_models / REAL)  # raises if a byte is left over
    assert len(net.layers) == 108 and net.kinds().count("con_4") == 29
    assert sum(int(np.prod(layer.params.shape)) for layer in net.layers if layer.params is not None) == sum(
        p.numel() for p in DlibResNet().parameters()
    )


def test_converter_refuses_a_damaged_file_in_one_line(tmp_path, capsys):
    from facegallery.convert_dlib import main

    (tmp_path / "half.dat").write_bytes(b"\x01\x01\x01\x0dloss_metric_2\x03")
    with pytest.raises(SystemExit) as e:
        main(["recognition", str(tmp_path / "half.dat"), str(tmp_path / "out")])
    err = capsys.readouterr().err.strip()
    assert e.value.code == 2 and "half.dat" in err and "\n" not in err and not (tmp_path / "out").exists()


def test_converting_the_real_file_reproduces_the_shipped_weights(tmp_path, dlib_models):
    from facegallery import checkpoints
    from facegallery.convert_dlib import convert
    from facegallery.embedder import checkpoint_folder

    out = convert(dlib_models / REAL, tmp_path / "converted")
    shipped = checkpoints.load_weights(checkpoint_folder("dlib-resnet29-v1"))
    assert all(torch.equal(v, shipped[k]) for k, v in checkpoints.load_weights(out).items())
    assert (
        checkpoints.read_config(out)["source"]["sha256"]
        == checkpoints.read_config(checkpoint_folder("dlib-resnet29-v1"))["source"]["sha256"]
    )
