"""Small value nodes of ComfyUI's templates: a user-written choice (CustomCombo, of
comfy_extras/nodes_logic.py) and SetFirstSigma (comfy_extras/nodes_custom_sampler.py: Lotus
and the depth templates start sampling at a chosen noise level)."""

from __future__ import annotations

from typing import Any

from easel.core.node import Input, NodeError, node
from easel.core.types import Sigmas


@node(category="values", outputs={"text": str, "index": int})
def Choice(choice: str = "", index: int = Input(0, ge=0)) -> tuple[str, int]:
    """The chosen option of a dropdown whose options the user wrote, and its position
    (ComfyUI's CustomCombo: its options live in the editor; the value is the text)."""
    return choice, index


@node(category="sampling", outputs={"sigmas": Sigmas})
def SetFirstSigma(
    sigmas: Sigmas, sigma: float = Input(136.0, ge=0.0, le=20000.0, step=0.001)
) -> Any:
    """The noise levels with the first one replaced by `sigma` (ComfyUI's SetFirstSigma)."""
    if sigmas.ndim != 1 or sigmas.shape[0] == 0:
        raise NodeError(
            f"expected a 1-D list of noise levels, got shape {tuple(sigmas.shape)}", "sigmas"
        )
    out = sigmas.clone()
    out[0] = sigma
    return out


NODES = [Choice, SetFirstSigma]
