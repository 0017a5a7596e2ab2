"""Embedders: photos (RGB uint8 face crops) in, unit vectors out.

The stable contract: ``embed(images) -> float32 (N, D)`` of unit rows, with ``name``, ``input_size``
(the side crops are resized to), the alignment ``template`` it reads, a ``spec`` (its model card
in brief) and a ``fingerprint`` that changes whenever the outputs would. Pixels in, vectors out:
``embed`` takes crops already in its template and never looks for landmarks; putting faces into the
template is :mod:`facegallery.detection`'s (found faces) and :func:`facegallery.landmarks.to_template`'s
(whole face crops).
"""

from __future__ import annotations

import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from facegallery import checkpoints, landmarks, quantization
from facegallery.alignment import PUBFIG83, TEMPLATES, Template
from facegallery.errors import UserError
from facegallery.faces import Face
from facegallery.images import resize
from facegallery.models import create_model

WEIGHTS_DIR = Path(__file__).parent / "weights"
DEFAULT_MODEL = "dlib-resnet29-v1"
PRECISIONS = ("auto", "int8", "fp32")


#: What every model's spec states (the contract test checks each shipped model has them all).
SPEC_KEYS = ("input_size", "template", "normalisation", "embedding_dim", "precision", "licence", "training_data")


class Embedder(Protocol):
    """What the gallery, evaluation and the CLI rely on."""

    name: str
    input_size: int
    template: Template
    fingerprint: str
    threshold: float | None
    spec: dict

    def embed(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray: ...


def embed_faces(embedder: Embedder, faces: Sequence[Face]) -> np.ndarray:
    """Embeddings (N, D) of faces, each already in the embedder's template (a face aligned for another
    template is a bug, refused). Faces that carry their embedding (read from the face cache) are not
    embedded again; the others get theirs set."""
    todo = [f for f in faces if f.embedding is None]
    wrong = {f.template for f in todo if f.template != embedder.template.name}
    if wrong:
        raise ValueError(f"faces in {', '.join(map(str, wrong))} given to {embedder.name} ({embedder.template.name})")
    if todo:
        for f, e in zip(todo, embedder.embed([f.crop for f in todo])):
            f.embedding = e
    if not faces:
        return np.zeros((0, int(embedder.spec["embedding_dim"])), np.float32)
    return np.stack([f.embedding for f in faces]).astype(np.float32)


def as_batch(images: np.ndarray | Sequence[np.ndarray], size: int) -> np.ndarray:
    """RGB uint8 images as one (N, size, size, 3) batch (resized where they differ)."""
    if isinstance(images, np.ndarray) and images.ndim == 4:
        return images if images.shape[1:3] == (size, size) else np.stack([resize(i, size) for i in images])
    return (
        np.stack([resize(np.asarray(i, dtype=np.uint8), size) for i in images])
        if len(images)
        else np.zeros((0, size, size, 3), np.uint8)
    )


def to_tensor(pixels: np.ndarray) -> torch.Tensor:
    """(N, H, W, 3) uint8 -> (N, 3, H, W) float in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(pixels)).permute(0, 3, 1, 2).float().div_(255.0)


def load_size(net_size: int, crop: float) -> int:
    """The side photos are resized to so that their central ``crop`` fraction is ``net_size``."""
    return int(round(net_size / crop))


def center_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    """The central size x size window of an (N, C, H, W) batch."""
    top, left = (x.shape[2] - size) // 2, (x.shape[3] - size) // 2
    return x[:, :, top : top + size, left : left + size]


def fold_batchnorm(model: torch.nn.Module) -> torch.nn.Module:
    """An inference copy of ``model`` with each BatchNorm after a convolution folded into its weights.

    Same outputs to float rounding (~1e-7), one pass over the activations less per conv. A network that
    torch.fx cannot trace (data-dependent control flow) is returned unfolded."""
    model = model.eval()
    try:
        with warnings.catch_warnings():  # the module imports torch.jit helpers that warn of deprecation
            warnings.simplefilter("ignore", DeprecationWarning)
            from torch.fx.experimental.optimization import fuse
        from torch.fx.proxy import TraceError
    except ImportError:  # a torch without it: unfolded is merely slower
        return model
    try:
        return fuse(model)
    except (TraceError, TypeError, NotImplementedError):
        return model


class TorchEmbedder:
    """A trained network from the registry plus its checkpoint config.

    ``model`` runs as given when ``precision`` is "int8" (an already quantised network); a float
    network is prepared for speed first (BatchNorm folded, channels-last)."""

    def __init__(
        self,
        model: torch.nn.Module,
        config: dict,
        name: str,
        fingerprint: str,
        precision: str = "fp32",
        net_size: int | None = None,
        reference: str | None = None,
    ):
        self.net_size = int(net_size or model.input_size)
        self.precision = precision
        # channels-last: ~1.4x faster convs on CPU; BatchNorm folded into convs: ~1.15x more
        self.model = model if precision == "int8" else fold_batchnorm(model).to(memory_format=torch.channels_last)
        self.config = config
        self.name = name
        #: what ``load_model`` reloads this very network from (a shipped name or an absolute folder, with
        #: its precision); the name alone may not be loadable (a checkpoint folder's)
        self.reference = reference or name
        # photos are resized to input_size, then the central crop fraction is fed to the network
        self.input_size: int = load_size(self.net_size, float(config.get("crop", 1.0)))
        self.fingerprint = fingerprint
        self.flip: bool = bool(config.get("tta_flip", False))
        # the int8 network's own calibrated threshold where ``facegallery quantize`` recorded one
        self.threshold: float | None = (
            config.get("int8", {}).get("threshold", config.get("threshold"))
            if precision == "int8"
            else config.get("threshold")
        )
        self.label_map: list[str] = config.get("label_map", [])
        name_of_template = config.get("template", PUBFIG83.name)
        if name_of_template not in TEMPLATES:
            raise UserError(f"{name}: unknown alignment template {name_of_template!r} (known: {', '.join(TEMPLATES)})")
        self.template: Template = TEMPLATES[name_of_template]
        self.spec: dict = {
            "input_size": self.net_size,
            "template": self.template.name,
            "normalisation": config.get("normalisation", "RGB / 255"),
            "embedding_dim": int(config.get("embedding_dim", 128)),
            "precision": precision,
            "licence": config.get("licence"),
            "training_data": config.get("training_data"),
        }

    @torch.inference_mode()
    def embed(self, images: np.ndarray | Sequence[np.ndarray], batch_size: int = 256) -> np.ndarray:
        """Unit embeddings (N, D) of RGB uint8 crops in the embedder's template (any size: resized to
        :attr:`input_size`)."""
        pixels = as_batch(images, self.input_size)
        out = []
        for i in range(0, len(pixels), batch_size):
            x = center_crop(to_tensor(pixels[i : i + batch_size]), self.net_size)
            x = x.contiguous(memory_format=torch.channels_last)
            e = self.model(x)
            if self.flip:
                e = torch.nn.functional.normalize(e + self.model(x.flip(3)), dim=1)
            out.append(e.float().numpy())
        dim = self.config.get("embedding_dim", 128)
        return np.concatenate(out) if out else np.zeros((0, dim), np.float32)


def shipped_models() -> list[str]:
    """Names of the models shipped inside the package."""
    return (
        sorted(p.name for p in WEIGHTS_DIR.iterdir() if (p / checkpoints.CONFIG).is_file())
        if WEIGHTS_DIR.is_dir()
        else []
    )


def checkpoint_folder(model: str | Path) -> Path:
    """The folder of a shipped model's name, a checkpoint folder, or a file inside one."""
    path = Path(model)
    if not path.exists() and (WEIGHTS_DIR / str(model)).is_dir():
        path = WEIGHTS_DIR / str(model)
    if path.is_file() and path.name in (checkpoints.CONFIG, checkpoints.WEIGHTS):
        path = path.parent
    if not path.is_dir():
        raise UserError(
            f"{model}: no such model (shipped: {', '.join(shipped_models()) or 'none'}; or give a checkpoint folder)"
        )
    return path


def split_precision(model: str | Path) -> tuple[str | Path, str]:
    """``'name@int8'`` -> ``('name', 'int8')``; a reference without a known suffix -> ``(ref, 'auto')``."""
    base, _, suffix = str(model).rpartition("@")
    return (base, suffix) if base and suffix in PRECISIONS else (model, "auto")


def load_model(model: str | Path | None = None, precision: str | None = None) -> Embedder:
    """An embedder by shipped name (default: the best shipped model), checkpoint folder, or ``dlib``.

    ``precision``: "int8" runs the quantised network (needs the checkpoint's int8 calibration,
    ``facegallery quantize``), "fp32" the float one, "auto" (default) int8 where the checkpoint has
    it and this PyTorch can run it. A reference may carry it as a suffix: ``resface64-pubfig83@fp32``."""
    model = DEFAULT_MODEL if model is None else model
    model, suffix = split_precision(model)
    precision = precision or suffix
    if precision not in PRECISIONS:
        raise UserError(f"unknown precision {precision!r} (one of {', '.join(PRECISIONS)})")
    if str(model) == "dlib":
        from facegallery.models.dlib_backend import DlibEmbedder

        return DlibEmbedder()
    path = checkpoint_folder(model)
    ref = path.name if path.resolve().parent == WEIGHTS_DIR.resolve() else str(path.resolve())
    config = checkpoints.read_config(path)
    net = create_model(config["arch"], **config.get("arch_kwargs", {}))
    try:
        net.load_state_dict(checkpoints.load_weights(path))
    except RuntimeError as e:
        raise UserError(f"{path}: weights do not fit architecture {config['arch']!r} ({e})") from None
    h = hashlib.sha1((path / checkpoints.WEIGHTS).read_bytes())
    h.update(
        json.dumps(
            {
                "arch": config["arch"],
                "tta_flip": config.get("tta_flip", False),
                "crop": config.get("crop", 1.0),
                **({"template": config["template"]} if "template" in config else {}),
            }
        ).encode()
    )
    if config.get("template", PUBFIG83.name) != PUBFIG83.name:  # whole crops are aligned by these landmarks
        h.update(landmarks.WEIGHTS.read_bytes())
    name = config.get("name", path.name)
    observers = quantization.load(path) if precision != "fp32" else None
    if precision == "int8" and observers is None:
        raise UserError(
            f"{path}: no int8 calibration ({quantization.INT8}); make one with "
            f"`facegallery quantize {path} --data TRAIN_FOLDER`"
        )
    if precision == "int8" and not quantization.available():
        raise UserError(f"this PyTorch ({torch.__version__}) cannot run int8 networks; use {name}@fp32")
    if observers is not None and quantization.available():
        try:
            qnet = quantization.build(net, observers, int(net.input_size))
        except ValueError as e:
            if precision == "int8":
                raise UserError(f"{path / quantization.INT8}: does not fit this network ({e})") from None
            warnings.warn(f"{path / quantization.INT8}: ignored, does not fit this network ({e})", stacklevel=2)
        else:
            h.update((path / quantization.INT8).read_bytes() + quantization.BACKEND.encode())
            return TorchEmbedder(
                qnet,
                config,
                name=f"{name}@int8",
                fingerprint=f"{name}@int8:{h.hexdigest()[:16]}",
                precision="int8",
                net_size=int(net.input_size),
                reference=f"{ref}@int8",
            )
    return TorchEmbedder(net, config, name=name, fingerprint=f"{name}:{h.hexdigest()[:16]}", reference=f"{ref}@fp32")
