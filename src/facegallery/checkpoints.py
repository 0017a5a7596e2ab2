"""Checkpoints: a folder holding ``weights.safetensors`` and ``config.json`` (architecture, label map,
data fingerprint, training config and command, calibrated threshold). Training state for resuming
(optimizer moments, RNG states) sits beside them in ``train_state.safetensors``; no pickle anywhere."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from facegallery.errors import UserError

WEIGHTS, CONFIG, STATE = "weights.safetensors", "config.json", "train_state.safetensors"
FORMAT = 1


def _atomic_json(path: Path, obj: Any) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True))
    os.replace(tmp, path)


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    config: dict,
    half: bool = False,
    train_state: dict[str, torch.Tensor] | None = None,
) -> Path:
    """Write weights (float16 when ``half``) and config atomically; returns the folder."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    sd = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        sd = {k: v.half() if v.is_floating_point() else v for k, v in sd.items()}
    tmp = folder / (WEIGHTS + ".tmp")
    save_file(sd, str(tmp))
    os.replace(tmp, folder / WEIGHTS)
    if train_state is not None:
        tmp = folder / (STATE + ".tmp")
        save_file({k: v.contiguous() for k, v in train_state.items()}, str(tmp))
        os.replace(tmp, folder / STATE)
    _atomic_json(folder / CONFIG, {"format": FORMAT, **config})
    return folder


def read_config(folder: str | Path) -> dict:
    """The checkpoint's config.json, or a one-line error naming what is missing."""
    folder = Path(folder)
    cfg = folder / CONFIG
    if not cfg.is_file() or not (folder / WEIGHTS).is_file():
        raise UserError(f"{folder}: not a checkpoint (expected {CONFIG} and {WEIGHTS} in it)")
    try:
        return json.loads(cfg.read_text())
    except json.JSONDecodeError as e:
        raise UserError(f"{cfg}: corrupt checkpoint config ({e})") from None


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    """The state dict in float32."""
    sd = load_file(str(Path(folder) / WEIGHTS))
    return {k: v.float() if v.is_floating_point() else v for k, v in sd.items()}


def load_train_state(folder: str | Path) -> dict[str, torch.Tensor] | None:
    """The saved optimizer/RNG tensors, or None for a weights-only checkpoint."""
    path = Path(folder) / STATE
    return load_file(str(path)) if path.is_file() else None


def update_config(folder: str | Path, **changes: Any) -> dict:
    """Merge ``changes`` into config.json (e.g. the threshold calibrated after training)."""
    cfg = read_config(folder)
    cfg.update(changes)
    _atomic_json(Path(folder) / CONFIG, cfg)
    return cfg
