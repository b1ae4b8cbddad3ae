"""Reading weights files into state dicts: safetensors always, pickle only when allowed."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.models.discovery import PICKLE_SUFFIXES
from easel.models.errors import ModelError, UnsafePickleError


def read_state_dict(path: Path, allow_pickle: bool = False) -> dict[str, Any]:
    """All tensors of `path` on the CPU (memory-mapped for safetensors)."""
    if path.suffix in PICKLE_SUFFIXES:
        if not allow_pickle:
            raise UnsafePickleError(path)
        import torch

        try:
            data = torch.load(str(path), map_location="cpu", weights_only=True)
        except Exception as exc:
            raise ModelError(f"cannot read {path.name}: {type(exc).__name__}: {exc}") from None
        while (
            isinstance(data, dict) and "state_dict" in data and isinstance(data["state_dict"], dict)
        ):
            data = data["state_dict"]
        if not isinstance(data, dict):
            raise ModelError(f"{path.name} holds a {type(data).__name__}, not a state dict")
        return {str(k): v for k, v in data.items() if hasattr(v, "shape")}
    from safetensors.torch import load_file

    try:
        return load_file(str(path))
    except Exception as exc:
        raise ModelError(
            f"cannot read {path.name} as safetensors: {type(exc).__name__}: {exc}"
        ) from None


def load_into(
    module_cls: Any, config: Any, state: dict[str, Any], dtype: Any, what: str, strict: bool = True
) -> Any:
    """`module_cls(config)` built on the meta device and filled from `state` (no random init:
    an SDXL UNet would otherwise spend seconds initialising weights it then overwrites)."""
    import torch

    with torch.device("meta"):
        module = (
            module_cls.from_config(config)
            if hasattr(module_cls, "from_config") and isinstance(config, dict)
            else module_cls(config)
        )
    state = {k: v.to(dtype) if v.is_floating_point() else v for k, v in state.items()}
    expected = set(module.state_dict())
    if not any(k.startswith("text_model.") for k in expected):
        # transformers 5 names CLIP text towers' tensors without "text_model."
        state = {k.removeprefix("text_model."): v for k, v in state.items()}
    result = module.load_state_dict(state, strict=False, assign=True)
    missing = [k for k in result.missing_keys if not k.endswith("position_ids")]
    if missing or (strict and result.unexpected_keys):
        raise ModelError(
            f"the {what} weights do not match its shape: {len(missing)} missing "
            f"(e.g. {missing[:3]}), {len(result.unexpected_keys)} unexpected (e.g. "
            f"{result.unexpected_keys[:3]})"
        )
    for name, buffer in list(module.named_buffers()):
        if buffer.is_meta:
            if not name.endswith("position_ids"):
                raise ModelError(f"the {what} has no value for {name}")
            owner = module.get_submodule(name.rsplit(".", 1)[0]) if "." in name else module
            owner.register_buffer(
                name.rsplit(".", 1)[-1],
                torch.arange(buffer.shape[-1]).expand(buffer.shape),
                persistent=False,
            )
    return module.eval().requires_grad_(False)
