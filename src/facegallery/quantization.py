"""int8 inference for a trained network: post-training static quantisation, stored without pickles.

Calibration runs the float network over a few hundred of its own training photos and records, for each
activation, a histogram of the values it takes (PyTorch's observers). Those histograms are plain float
tensors, so a checkpoint keeps them in ``int8.safetensors`` beside its weights; loading rebuilds the
int8 network from the float weights plus the histograms (quantised weights are recomputed, exactly).
Measured on this project's networks: ~1.4x the float throughput on one x86 core (benchmarks/RESULTS.md
section 5), embeddings within cosine ~0.997 of the float ones.

Uses ``torch.ao.quantization``'s FX mode with the ``x86`` backend (fbgemm kernels): a machine whose
PyTorch lacks either (ARM, or a future PyTorch without the module) keeps the float network.
"""

from __future__ import annotations

import copy
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn as nn
from safetensors.torch import load_file, save_file

from facegallery.errors import UserError

INT8 = "int8.safetensors"
BACKEND = "x86"
_OBSERVER = "activation_post_process"


@contextmanager
def _quiet() -> Iterator[None]:
    """torch.ao.quantization warns of its deprecation and of observer defaults on every use."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def available() -> bool:
    """Whether this PyTorch can run the int8 network (FX quantisation and the x86 kernels)."""
    try:
        with _quiet():
            import torch.ao.quantization.quantize_fx  # noqa: F401
    except ImportError:
        return False
    return BACKEND in torch.backends.quantized.supported_engines


def _prepare(model: nn.Module, size: int) -> torch.fx.GraphModule:
    """``model`` (float, any mode) traced with an observer after every activation to quantise."""
    with _quiet():
        from torch.ao.quantization import get_default_qconfig_mapping
        from torch.ao.quantization.quantize_fx import prepare_fx

        torch.backends.quantized.engine = BACKEND
        example = torch.zeros(2, 3, size, size)
        return prepare_fx(copy.deepcopy(model).eval(), get_default_qconfig_mapping(BACKEND), (example,))


@torch.no_grad()  # not inference_mode: the observer tensors must stay loadable into a module
def calibrate(model: nn.Module, batches: Iterator[torch.Tensor] | list[torch.Tensor]) -> dict[str, torch.Tensor]:
    """The observers' state after running ``model`` over ``batches`` of network-ready inputs
    ((N, 3, S, S) floats in [0, 1]): what :func:`build` needs besides the float weights."""
    prepared = None
    for x in batches:
        if prepared is None:
            prepared = _prepare(model, x.shape[-1])
        prepared(x)
    if prepared is None:
        raise UserError("int8 calibration needs at least one photo")
    return {k: v.detach().clone().contiguous() for k, v in prepared.state_dict().items() if _OBSERVER in k}


def build(model: nn.Module, observers: dict[str, torch.Tensor], size: int) -> nn.Module:
    """The int8 network from the float ``model`` and :func:`calibrate`'s observer state.

    Raises ValueError when the observers do not belong to this network (another architecture, or a
    PyTorch that traces it differently)."""
    prepared = _prepare(model, size)
    want = {k for k in prepared.state_dict() if _OBSERVER in k}
    if want != set(observers):
        raise ValueError(f"calibration has {len(observers)} observer tensors, the network expects {len(want)}")
    with _quiet():
        from torch.ao.quantization.quantize_fx import convert_fx

        prepared.load_state_dict(observers, strict=False)
        return convert_fx(prepared)


def save(folder: str | Path, observers: dict[str, torch.Tensor]) -> Path:
    """Write the observer state as ``int8.safetensors`` in a checkpoint folder."""
    path = Path(folder) / INT8
    tmp = path.with_suffix(".tmp")
    save_file(observers, str(tmp))
    tmp.replace(path)
    return path


def load(folder: str | Path) -> dict[str, torch.Tensor] | None:
    """The stored observer state, or None when the checkpoint has no int8 calibration."""
    path = Path(folder) / INT8
    if not path.is_file():
        return None
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises its own error types for damaged files
        raise UserError(f"{path}: unreadable int8 calibration ({e}); delete it or run `facegallery quantize`") from None
