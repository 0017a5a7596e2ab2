"""Convert upstream's YuNet-n checkpoint into the package's safetensors (run once, by a developer).

    python -m facegallery.convert_yunet ../shared/weights/yunet/yunet_n.pth [OUT_FOLDER] \
        --calibrate ../shared/data/pubfig83/train

Reads the checkpoint with ``torch.load(weights_only=True)`` (tensors only, no code), folds every batch
norm into the convolution before it, reorders the first convolution's input channels from BGR to RGB,
merges each level's four heads (class, objectness, box, landmarks) into one 16-channel head, and writes
``detector.safetensors`` (its metadata says what was converted, from which file, its sha256); with
``--calibrate`` also the int8 network's activation ranges (``int8.safetensors``: PyTorch's observer
histograms over 64 seeded composites of the folder's photos). The package never reads upstream's files
at run time.
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np
import torch

from facegallery.detectors.yunet import STRIDES, WEIGHTS, YuNet


def _fold(sd: dict, conv: str, bn: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Weights and bias of convolution ``conv`` with batch norm ``bn`` after it folded in."""
    w, b = sd[f"{conv}.weight"].double(), sd[f"{conv}.bias"].double()
    scale = sd[f"{bn}.weight"].double() / torch.sqrt(sd[f"{bn}.running_var"].double() + 1e-5)
    return (w * scale[:, None, None, None]).float(), ((b - sd[f"{bn}.running_mean"].double()) * scale).add(
        sd[f"{bn}.bias"].double()
    ).float()


def _unit(sd: dict, src: str, bn: bool = True) -> dict[str, torch.Tensor]:
    """An upstream ConvDPUnit (1x1, depthwise 3x3, batch norm) as a SeparableConv's tensors."""
    depth_w, depth_b = (
        _fold(sd, f"{src}.conv2", f"{src}.bn") if bn else (sd[f"{src}.conv2.weight"], sd[f"{src}.conv2.bias"])
    )
    return {
        "point.weight": sd[f"{src}.conv1.weight"],
        "point.bias": sd[f"{src}.conv1.bias"],
        "depth.weight": depth_w,
        "depth.bias": depth_b,
    }


def convert(sd: dict) -> dict[str, torch.Tensor]:
    """Upstream's state dict -> :class:`~facegallery.detectors.yunet.YuNet`'s."""
    out: dict[str, torch.Tensor] = {}

    def put(prefix: str, tensors: dict[str, torch.Tensor]) -> None:
        out.update({f"{prefix}.{k}": v.float().contiguous() for k, v in tensors.items()})

    w, b = _fold(sd, "backbone.model0.conv1", "backbone.model0.bn1")
    put("stem", {"weight": w.flip(1), "bias": b})  # upstream reads BGR; ours reads RGB
    put("stem_separable", _unit(sd, "backbone.model0.conv2"))
    for i in range(5):
        for j in (1, 2):
            put(f"stages.{i}.{j - 1}", _unit(sd, f"backbone.model{i + 1}.conv{j}"))
    for i in range(len(STRIDES)):
        put(f"lateral.{i}", _unit(sd, f"neck.lateral_convs.{i}"))
        put(f"shared.{i}", _unit(sd, f"bbox_head.multi_level_share_convs.{i}.0"))
        parts = [_unit(sd, f"bbox_head.multi_level_{k}.{i}", bn=False) for k in ("cls", "obj", "bbox", "kps")]
        put(f"heads.{i}", {k: torch.cat([p[k] for p in parts]) for k in parts[0]})
    return out


def calibration_photos(folder: Path, n: int = 64, seed: int = 0) -> list[torch.Tensor]:
    """``n`` 640x480 network inputs for the int8 calibration: photos of ``folder`` (face crops, say
    PubFig83's training ones) pasted 1-4 at a time at 40-300 px onto blurred enlargements of others,
    as ordinary photos hold faces of many sizes on busy backgrounds (seeded)."""
    from PIL import Image, ImageFilter

    from facegallery.images import iter_images, load_image

    paths = sorted(iter_images([folder]))
    if not paths:
        raise SystemExit(f"{folder}: no photos to calibrate on")
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        back = Image.fromarray(load_image(paths[rng.integers(len(paths))])).resize((640, 480))
        canvas = back.filter(ImageFilter.GaussianBlur(float(rng.uniform(2, 8))))
        for _ in range(int(rng.integers(1, 5))):
            side = int(np.exp(rng.uniform(np.log(40), np.log(300))))
            face = Image.fromarray(load_image(paths[rng.integers(len(paths))])).resize((side, side))
            canvas.paste(face, (int(rng.integers(0, 640 - side)), int(rng.integers(0, 480 - side))))
        out.append(torch.from_numpy(np.asarray(canvas, np.float32).copy()).permute(2, 0, 1)[None])
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("checkpoint", type=Path)
    parser.add_argument("out", type=Path, nargs="?", default=WEIGHTS.parent)
    parser.add_argument(
        "--calibrate", type=Path, help="A folder of face photos: also write the int8 calibration (int8.safetensors)."
    )
    args = parser.parse_args(argv)
    from safetensors.torch import save_file

    raw = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    tensors = convert(raw.get("state_dict", raw))
    YuNet().load_state_dict(tensors)  # every tensor has its place
    args.out.mkdir(parents=True, exist_ok=True)
    info = {
        "name": "yunet-n",
        "converted_from": args.checkpoint.name,
        "source_sha256": hashlib.sha256(args.checkpoint.read_bytes()).hexdigest(),
        "upstream": "github.com/ShiqiYu/libfacedetection.train @ 0047ac24",
        "input": "RGB float 0..255 (N, 3, H, W), H and W multiples of 32",
        "licence": "Apache-2.0 (the weights); trained on WIDER FACE (research-oriented terms)",
    }
    save_file(tensors, str(args.out / "detector.safetensors"), metadata=info)
    if args.calibrate is not None:
        from facegallery import quantization

        net = YuNet()
        net.load_state_dict(tensors)
        quantization.save(args.out, quantization.calibrate(net.eval(), calibration_photos(args.calibrate)))
        print(f"wrote {args.out / quantization.INT8} (64 calibration photos from {args.calibrate})")
    n = sum(t.numel() for t in tensors.values())
    print(f"wrote {args.out / 'detector.safetensors'} ({n:,} parameters; its card: README.md beside it)")


if __name__ == "__main__":
    main()
