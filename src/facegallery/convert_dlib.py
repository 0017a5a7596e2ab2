"""Convert dlib's face recognition ResNet file into a checkpoint folder, the way the shipped
``dlib-resnet29-v1`` was made::

    python -m facegallery.convert_dlib dlib_face_recognition_resnet_model_v1.dat OUT

(the file comes with the ``face_recognition_models`` package, for instance). The shipped model's
unknown threshold and int8 calibration are added afterwards (``benchmarks/bench_detection.py
calibrate`` and ``facegallery quantize``; the model's README says how).
"""
from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

from facegallery.checkpoints import save_checkpoint
from facegallery.errors import UserError
from facegallery.models.dlib_resnet import CHIP, from_dat

#: The model card's config fields for the converted network (README.md beside the weights says more).
CARD = {
    "arch": "dlib-resnet29", "arch_kwargs": {}, "input_size": CHIP, "crop": 1.0, "embedding_dim": 128,
    "template": "dlib-chip-150-0.25", "normalisation": "(RGB - (122.782, 117.001, 104.298)) / 256",
    "licence": "CC0-1.0 (public domain), as dlib's author released dlib_face_recognition_resnet_model_v1",
    "training_data": "by dlib's author, about 3 million faces of 7,485 people (FaceScrub, VGG Face and photos "
                     "collected from the internet), avoiding LFW's identities, per the dlib-models README; "
                     "not trained here",
}


def convert(dat: str | Path, out: str | Path, name: str = "dlib-resnet29-v1") -> Path:
    """Write dlib's file as a checkpoint folder (weights.safetensors + config.json with the card)."""
    dat = Path(dat)
    source = {"file": dat.name, "sha256": hashlib.sha256(dat.read_bytes()).hexdigest(),
              "command": f"python -m facegallery.convert_dlib {dat.name} {Path(out).name}"}
    return save_checkpoint(out, from_dat(dat), {**CARD, "name": name, "source": source})


def main(argv: list[str] | None = None) -> None:
    """Convert dlib's dlib_face_recognition_resnet_model_v1.dat into a checkpoint folder."""
    parser = argparse.ArgumentParser(prog="python -m facegallery.convert_dlib", description=main.__doc__)
    parser.add_argument("dat", type=Path, help="dlib_face_recognition_resnet_model_v1.dat")
    parser.add_argument("out", type=Path, help="checkpoint folder to write")
    args = parser.parse_args(argv)
    try:
        print(f"{convert(args.dat, args.out)}: written")
    except UserError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
