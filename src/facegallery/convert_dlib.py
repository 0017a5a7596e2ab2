"""Convert dlib's CC0 model files into what facegallery ships, the way the shipped ones were made::

    python -m facegallery.convert_dlib recognition dlib_face_recognition_resnet_model_v1.dat OUT
    python -m facegallery.convert_dlib landmarks shape_predictor_5_face_landmarks.dat [OUT]
    python -m facegallery.convert_dlib detector mmod_human_face_detector.dat [OUT]

(the files come with the ``face_recognition_models`` package, for instance). The recognition model's
unknown threshold and int8 calibration are added afterwards (``benchmarks/bench_detection.py
calibrate`` and ``facegallery quantize``; the model's README says how).
"""

from __future__ import annotations

import argparse
import hashlib
from pathlib import Path

import numpy as np

from facegallery.checkpoints import save_checkpoint
from facegallery.errors import UserError
from facegallery.landmarks import WEIGHTS as LANDMARKS
from facegallery.mmod import WEIGHTS as DETECTOR
from facegallery.models.dlib_dat import read_shape_predictor
from facegallery.models.dlib_resnet import CHIP, from_dat

#: The model card's config fields for the converted network (README.md beside the weights says more).
CARD = {
    "arch": "dlib-resnet29",
    "arch_kwargs": {},
    "input_size": CHIP,
    "crop": 1.0,
    "embedding_dim": 128,
    "template": "dlib-chip-150-0.25",
    "normalisation": "(RGB - (122.782, 117.001, 104.298)) / 256",
    "licence": "CC0-1.0 (public domain), as dlib's author released dlib_face_recognition_resnet_model_v1",
    "training_data": "by dlib's author, about 3 million faces of 7,485 people (FaceScrub, VGG Face and photos "
    "collected from the internet), avoiding LFW's identities, per the dlib-models README; "
    "not trained here",
}


def convert(dat: str | Path, out: str | Path, name: str = "dlib-resnet29-v1") -> Path:
    """Write dlib's file as a checkpoint folder (weights.safetensors + config.json with the card)."""
    dat = Path(dat)
    source = {
        "file": dat.name,
        "sha256": hashlib.sha256(dat.read_bytes()).hexdigest(),
        "command": f"python -m facegallery.convert_dlib recognition {dat.name} {Path(out).name}",
    }
    return save_checkpoint(out, from_dat(dat), {**CARD, "name": name, "source": source})


def convert_landmarks(dat: str | Path, out: str | Path = LANDMARKS) -> Path:
    """Write dlib's shape predictor file as a safetensors file of its arrays."""
    from dataclasses import asdict

    from safetensors.numpy import save_file

    arrays = {k: np.ascontiguousarray(v) for k, v in asdict(read_shape_predictor(dat)).items()}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    save_file(arrays, str(out), metadata={"source": Path(dat).name, "licence": "CC0-1.0"})
    return out


def convert_detector(dat: str | Path, out: str | Path = DETECTOR) -> Path:
    """Write dlib's MMOD face detector as a safetensors file (batch norms folded, settings in metadata)."""
    from facegallery import mmod
    from facegallery.models.dlib_mmod import from_dat

    model, settings = from_dat(dat)
    meta = {
        "source": Path(dat).name,
        "sha256": hashlib.sha256(Path(dat).read_bytes()).hexdigest(),
        "licence": "CC0-1.0",
    }
    return mmod.save(model, settings, out, meta)


def main(argv: list[str] | None = None) -> None:
    """Convert dlib's CC0 model files (the face recognition ResNet, the 5-point shape predictor, the MMOD
    face detector)."""
    parser = argparse.ArgumentParser(prog="python -m facegallery.convert_dlib", description=main.__doc__)
    sub = parser.add_subparsers(dest="what", required=True)
    rec = sub.add_parser("recognition", help="dlib_face_recognition_resnet_model_v1.dat -> checkpoint folder")
    rec.add_argument("dat", type=Path)
    rec.add_argument("out", type=Path, help="checkpoint folder to write")
    marks = sub.add_parser("landmarks", help="shape_predictor_5_face_landmarks.dat -> safetensors")
    marks.add_argument("dat", type=Path)
    marks.add_argument("out", type=Path, nargs="?", default=LANDMARKS)
    det = sub.add_parser("detector", help="mmod_human_face_detector.dat -> safetensors")
    det.add_argument("dat", type=Path)
    det.add_argument("out", type=Path, nargs="?", default=DETECTOR)
    args = parser.parse_args(argv)
    run = {"recognition": convert, "landmarks": convert_landmarks, "detector": convert_detector}[args.what]
    try:
        print(f"{run(args.dat, args.out)}: written")
    except UserError as e:
        parser.exit(2, f"error: {e}\n")


if __name__ == "__main__":
    main()
