"""Model registry: a new network is one file plus one ``@register`` line.

Every registered network maps a float batch (N, 3, S, S) in [0, 1] to unit rows (N, 128).
"""

from __future__ import annotations

from collections.abc import Callable

import torch.nn as nn

from facegallery.errors import UserError

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register(name: str) -> Callable[[Callable[..., nn.Module]], Callable[..., nn.Module]]:
    """Class or factory decorator adding a network under ``name``."""

    def deco(factory: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
        _REGISTRY[name] = factory
        return factory

    return deco


def create_model(name: str, **kwargs) -> nn.Module:
    """Build the registered network ``name`` (untrained). Its ``input_size`` attribute gives S."""
    if name not in _REGISTRY:
        raise UserError(f"unknown model architecture {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**kwargs)


def list_models() -> list[str]:
    """Registered architecture names."""
    return sorted(_REGISTRY)


from facegallery.models import dlib_resnet, resface, seed_cnn  # noqa: E402,F401  (fill the registry)
