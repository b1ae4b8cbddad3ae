"""What every family's diffusion-model loader does the same way (ComfyUI's UNETLoader files):
read the file (ComfyUI's scaled fp8 multiplied out, its comfy-kitchen-quantised weights
dequantised by easel.models.quantized_files, GGUF files by easel.models.gguf_files, other
integer weights refused by name),
refuse a file of another architecture, build the module, report a file that does not fit it,
keep the weights in fp8 when asked, and cache the module in the model manager.

A family's loader says only what differs: how its keys are recognised and how its module is
built (`load_transformer`), and which family a MODEL handle carries (`family_handle`).
`diffusion_model_files` and `no_single_file` make the functions
easel.models.family_files looks up on a family module out of just that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

from easel.models.errors import ModelError
from easel.models.families.recognise import summarise
from easel.models.flux_loading import dequantize_scaled_fp8, storage_dtype, stored_as
from easel.models.handles import ClipHandle, ModelHandle, VaeHandle

T = TypeVar("T")

# Errors the model classes raise when a file's tensors do not fit the architecture its keys
# suggest (a shape mismatch, a key the converter expects and does not find).
_MISFIT = (RuntimeError, ValueError, KeyError, IndexError, AssertionError)


def read_weights(path: Path, manager: Any, not_weights: tuple[str, ...] = ()) -> dict[str, Any]:
    """A file's state dict as plain float weights: ComfyUI's quantised layers (int8, int8
    ConvRot, W4A8, NVFP4, ... marked `.comfy_quant`) dequantised through comfy-kitchen into the
    manager's dtype (easel.models.quantized_files), scaled fp8 weights multiplied out. Integer
    weights without a marker are refused by name rather than read wrongly; `not_weights` are
    key endings of integer tensors that are not weights (a tokenizer stored as bytes)."""
    import torch

    from easel.models.gguf_files import is_gguf, read_gguf
    from easel.models.quantized_files import dequantize
    from easel.models.state_dicts import read_state_dict

    dtype = getattr(manager, "dtype", None) or torch.float32
    if is_gguf(path):  # ComfyUI-GGUF's files, dequantised through diffusers
        return read_gguf(path, dtype)
    state = dequantize(read_state_dict(path, manager.allow_unsafe_pickle), path, dtype)
    quantised = [
        k
        for k, v in state.items()
        if getattr(v, "dtype", None) in (torch.int8, torch.uint8)
        and not k.endswith((".comfy_quant", *not_weights))
    ]
    if quantised:
        raise ModelError(
            f"{path.name} holds integer-quantised weights (e.g. {quantised[0]}) with no "
            "ComfyUI quantisation marker (.comfy_quant), which Easel does not read: use the "
            "bf16, fp16 or fp8 file of the model, or ComfyUI's quantised one"
        )
    return dequantize_scaled_fp8(state)


def unprefixed(state: Mapping[str, Any], prefix: str | None, missing: str) -> dict[str, Any]:
    """The keys of `state` under `prefix` (a family's `prefix_of(state)`: ComfyUI's
    `model.diffusion_model.`, or "") without it; where the family found no transformer in the
    file (`prefix` None), a ModelError saying `missing`."""
    if prefix is None:
        raise ModelError(missing)
    return {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}


def fitted(path: Path, what: str, build: Callable[[], T]) -> T:
    """`build()`, with the model code's errors as a ModelError naming the file: `what` ("a
    Krea 2 transformer") is what the file's keys said it is."""
    try:
        return build()
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except _MISFIT as exc:
        raise ModelError(
            f"{path.name} looks like {what} but does not fit that architecture "
            f"({type(exc).__name__}: {exc})"
        ) from None


def load_transformer(
    path: Path,
    manager: Any,
    weight_dtype: str,
    *,
    kind: str,
    what: str,
    recognised: Callable[[Mapping[str, Any]], bool],
    build: Callable[[Mapping[str, Any], Any, Path], Any],
    read: Callable[[Path, Any], Mapping[str, Any]] = read_weights,
    hint: str = "",
) -> Any:
    """The module of a diffusion-model file, cached by the manager under (file, `kind`, weight
    dtype). A file whose keys are not `what`'s is refused with a summary of what it holds (and
    `hint`); fp8 weight dtypes keep the weights in fp8 and compute in the manager's dtype
    (diffusers' layerwise casting)."""
    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read(path, manager)
        if not recognised(state):
            raise ModelError(f"{path.name} is not {what} ({summarise(state)}){hint}")
        return stored_as(build(state, manager.dtype, path), storage, manager.dtype)

    return manager.load_module((str(path.resolve()), f"{kind}-transformer:{weight_dtype}"), load)


def diffusion_model_files(
    family: Any,
    recognise: Callable[[Mapping[str, Any]], Any],
    *,
    kind: str,
    what: str,
    build: Callable[[Mapping[str, Any], Any, Path], Any],
    read: Callable[[Path, Any], Mapping[str, Any]] = read_weights,
    hint: str = "",
    family_of: Callable[[Any], Any] | None = None,
) -> tuple[Callable[[Mapping[str, Any]], bool], Callable[..., ModelHandle]]:
    """`recognise_diffusion_model` and `diffusion_model` (easel.models.family_files
    .DIFFUSION_MODELS) of a family whose diffusion-model file holds one transformer: a file is
    the family's where `recognise(state)` finds one (not None); its module is `build` through
    `load_transformer` (`kind`, `what`, `read`, `hint` as there) and its MODEL carries `family`,
    or `family_of(module.config)` where the module's config decides. A family module binds
    them to those names, which family_files looks up."""

    def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
        return recognise(state) is not None

    def diffusion_model(
        name: str, path: Path, manager: Any, weight_dtype: str = "default"
    ) -> ModelHandle:
        module = load_transformer(
            path,
            manager,
            weight_dtype,
            kind=kind,
            what=what,
            recognised=recognise_diffusion_model,
            build=build,
            read=read,
            hint=hint,
        )
        chosen = family if family_of is None else family_of(module.config)
        return family_handle(chosen, name, module, manager)

    return recognise_diffusion_model, diffusion_model


def family_handle(
    family: Any,
    name: str,
    module: Any,
    manager: Any,
    vae: VaeHandle | None = None,
    scheduler_config: Mapping[str, Any] | None = None,
) -> ModelHandle:
    """A MODEL of `family`: its module, scheduler config (the family's unless given) and
    latent factor."""
    return ModelHandle(
        name,
        module,
        dict(scheduler_config or family.scheduler_config),
        family.latent.factor,
        manager,
        vae=vae,
        family=family,
    )


Checkpoint = tuple[ModelHandle, ClipHandle, VaeHandle]


def no_single_file(
    message: str,
) -> tuple[Callable[[Mapping[str, Any]], bool], Callable[[str, Path, Any], Checkpoint]]:
    """`is_checkpoint` and `single_file_checkpoint` (easel.models.family_files.CHECKPOINTS) of a
    family that has no single-file checkpoint: no file is read as one, and one given to
    CheckpointLoaderSimple is refused with `message` (which split files to load instead)."""

    def is_checkpoint(state: Mapping[str, Any]) -> bool:
        return False

    def single_file_checkpoint(name: str, path: Path, manager: Any) -> Checkpoint:
        raise ModelError(f"{path.name}: {message}")

    return is_checkpoint, single_file_checkpoint
