"""Giving a trained checkpoint its int8 network: calibrate the activation ranges on its own photos,
validate both precisions as training does, and record it all in the checkpoint.

Above both :mod:`facegallery.quantization` (the int8 mechanics) and :mod:`facegallery.embedder` (which
loads either precision), so that neither needs the other's higher half.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from facegallery import checkpoints
from facegallery.calibration import ACCEPT_RATE
from facegallery.calibration import calibrate as calibrate_threshold
from facegallery.embedder import as_batch, center_crop, load_model, to_tensor
from facegallery.errors import UserError
from facegallery.landmarks import to_template
from facegallery.models import create_model
from facegallery.quantization import BACKEND, available, calibrate, save


def quantize_checkpoint(
    folder: str | Path,
    calibration: np.ndarray,
    val: dict | None = None,
    refresh_float: bool = False,
    aligned: bool = False,
) -> dict:
    """Calibrate the checkpoint in ``folder`` on ``calibration`` photos (uint8 (N, S, S, 3) at the
    model's load size) and write its ``int8.safetensors``. With a validation set (as
    :func:`facegallery.training.validation_set` makes) the int8 network gets its own unknown threshold,
    calibrated as the float one was, and config.json records both networks' validation figures;
    ``refresh_float`` also replaces the float network's threshold with the one calibrated here (what
    ``facegallery quantize`` does, so that re-running it brings a checkpoint up to a changed rule).
    ``aligned``: the photos are already in the network's alignment template (as training loads them)."""
    if not available():
        raise UserError(
            f"this PyTorch ({torch.__version__}) cannot run int8 networks (needs the {BACKEND} quantised engine)"
        )
    config = checkpoints.read_config(folder)
    accept_rate = float(config.get("train_config", {}).get("accept_rate", ACCEPT_RATE))
    net = create_model(config["arch"], **config.get("arch_kwargs", {}))
    net.load_state_dict(checkpoints.load_weights(folder))
    size = int(net.input_size)
    # the network's own input: photos carried into its alignment template, resized, centre-cropped
    fp32 = load_model(folder, precision="fp32")

    def prepared(photos: np.ndarray) -> np.ndarray:
        return as_batch(photos if aligned else to_template(list(photos), fp32.template), fp32.input_size)

    calibration = prepared(calibration)
    batches = (center_crop(to_tensor(calibration[i : i + 128]), size) for i in range(0, len(calibration), 128))
    save(folder, calibrate(net, batches))
    info: dict = {"backend": BACKEND, "calibration_photos": int(len(calibration)), "torch": torch.__version__}
    if val is not None:
        genuine = {}
        for precision in ("fp32", "int8"):
            e = load_model(folder, precision=precision)
            genuine[precision] = e.embed(prepared(val["genuine"]))
            cal = calibrate_threshold(
                e.embed(prepared(val["gallery"])),
                val["gallery_labels"],
                int(val["gallery_labels"].max()) + 1,
                genuine[precision],
                val["genuine_labels"],
                e.embed(prepared(val["impostors"])),
                accept_rate,
            )
            info[f"validation_{precision}"] = {
                "top1": round(cal.closed_top1, 4),
                "threshold": round(cal.threshold, 4),
                "open": None if cal.accuracy is None else round(cal.accuracy, 4),
            }
        info["threshold"] = info["validation_int8"]["threshold"]
        if refresh_float:
            checkpoints.update_config(folder, threshold=info["validation_fp32"]["threshold"])
        cos = (genuine["fp32"] * genuine["int8"]).sum(1)
        info["cosine_to_fp32"] = {
            "photos": int(len(cos)),
            "mean": round(float(cos.mean()), 4),
            "min": round(float(cos.min()), 4),
        }
    checkpoints.update_config(folder, int8=info)
    return info
