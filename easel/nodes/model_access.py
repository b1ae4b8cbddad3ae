"""How nodes reach the model manager and turn model errors into user-facing NodeErrors."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from easel.core.context import Context
from easel.core.node import NodeError


def manager(ctx: Context) -> Any:
    """The host's model manager (a NodeError if the host has none)."""
    found = ctx.services.get("models")
    if found is None:
        raise NodeError(
            "this host provides no model manager (services['models']); "
            "run through `easel run` or pass ModelManager.from_environment()"
        )
    return found


@contextmanager
def model_errors(input_name: str | None = None) -> Iterator[None]:
    """Report ModelError (missing model, refused pickle, bad files) as a NodeError."""
    from easel.models.errors import ModelError

    try:
        yield
    except ModelError as exc:
        raise NodeError(str(exc), input_name) from exc


def discovered(kind: str) -> Any:
    """A choices callable listing discovered names: a models-folder kind ("checkpoints",
    "loras", "vae", "embeddings", "controlnet", "upscale_models", "diffusion_models",
    "text_encoders", "clip_vision": names with extension), or the older views "checkpoint"
    (names without extension) and the bundle parts "clip", "prior", "upscaler"."""

    def names() -> list[str]:
        from easel.models import discovery

        if kind == "checkpoint":
            return discovery.checkpoint_names()
        if kind not in ("clip", "prior", "upscaler") and discovery.canonical_kind(kind):
            return discovery.kind_names(kind)
        return discovery.names_with_part(kind)

    names.__name__ = f"discovered_{kind}_names"
    return names
