"""Style models (ComfyUI's `style_models/` files): Flux Redux, which turns SigLIP image tokens
into extra T5-width tokens that Flux reads beside the prompt's (diffusers' ReduxImageEncoder, the
projector of FluxPriorReduxPipeline)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models import discovery
from easel.models.errors import ModelError

KIND = "style_models"


@dataclass(eq=False)
class StyleModelHandle:
    """A STYLE_MODEL handle: the Redux projector (held by the model manager)."""

    name: str
    path: Path
    model: Any = field(repr=False)
    manager: Any = field(repr=False, default=None)

    @property
    def image_width(self) -> int:
        """The width of the image tokens it reads (SigLIP's hidden size)."""
        return int(self.model.redux_up.in_features)

    @property
    def text_width(self) -> int:
        """The width of the tokens it makes (Flux's T5 width)."""
        return int(self.model.redux_down.out_features)


def build(state: dict[str, Any], dtype: Any, what: str) -> Any:
    """diffusers' ReduxImageEncoder from a flux1-redux file (redux_up, redux_down)."""
    import torch
    from diffusers.pipelines.flux.modeling_flux import ReduxImageEncoder

    if "style_embedding" in state:
        raise ModelError(
            f"{what} is a T2I-Adapter style model (style_embedding), which Easel does not "
            "support: StyleModelLoader loads Flux Redux files (flux1-redux-dev)"
        )
    if "redux_up.weight" not in state or "redux_down.weight" not in state:
        first = ", ".join(list(state)[:3]) or "none"
        raise ModelError(
            f"{what} is not a Flux Redux style model (no redux_up / redux_down weights; "
            f"first keys: {first})"
        )
    up, down = state["redux_up.weight"], state["redux_down.weight"]
    if up.shape[0] != down.shape[1] or down.shape[1] != 3 * down.shape[0]:
        raise ModelError(
            f"{what}: redux_up {tuple(up.shape)} and redux_down {tuple(down.shape)} do not "
            "fit together as a Redux projector"
        )
    with torch.device("meta"):
        model = ReduxImageEncoder(redux_dim=int(up.shape[1]), txt_in_features=int(down.shape[0]))
    wanted = {
        k: v.to(dtype) for k, v in state.items() if k.startswith(("redux_up.", "redux_down."))
    }
    model.load_state_dict(wanted, strict=True, assign=True)
    return model.eval().requires_grad_(False)


def load(manager: Any, name: str) -> StyleModelHandle:
    """The shared handle of `style_models/<name>`, loaded once per file version."""
    from easel.models.state_dicts import read_state_dict

    path = discovery.resolve(KIND, name, roots=manager.roots)
    stat = path.stat()
    key = (str(path.resolve()), f"{stat.st_size}:{stat.st_mtime_ns}")

    def make() -> StyleModelHandle:
        state = read_state_dict(path, manager.allow_unsafe_pickle)
        model = build(state, manager.dtype, f"style_models/{name}")
        manager.load_module((key[0], "style_model", key[1]), lambda: model)
        return StyleModelHandle(name, path, model, manager)

    handle: StyleModelHandle = manager._handle(("style_model", *key), make)
    return handle


def image_tokens(style: StyleModelHandle, hidden_states: Any) -> Any:
    """Redux tokens [1, B * tokens, text width] for SigLIP tokens [B, tokens, width]: every
    image's tokens one after the other, as ComfyUI's StyleModelApply flattens them."""
    import torch

    if hidden_states.shape[-1] != style.image_width:
        raise ModelError(
            f"the image tokens have width {hidden_states.shape[-1]} but {style.name} reads "
            f"{style.image_width} (SigLIP so400m's 1152 for flux1-redux): encode the image "
            "with the SigLIP vision model Redux was trained with"
        )
    model = style.manager.place(style.model) if style.manager is not None else style.model
    param = next(model.parameters())
    with torch.inference_mode():
        tokens = model(hidden_states.to(device=param.device, dtype=param.dtype)).image_embeds
    return tokens.float().cpu().flatten(0, 1).unsqueeze(0)
