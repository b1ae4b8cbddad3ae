"""LoRA files for the transformer (flow) families: Flux.1 (dev, schnell, Fill, Kontext), Chroma,
Flux.2, Qwen-Image, Z-Image, Lumina 2, HiDream and SD3.5.

Reading a file is diffusers' job: the family's pipeline class (its `pipeline_class` in the
registry) has `lora_state_dict`, which recognises kohya (`lora_unet_double_blocks_...`),
ComfyUI / BFL (`diffusion_model.double_blocks...`), xlabs, ai-toolkit and diffusers/PEFT
(`transformer.<module>.lora_A.weight`) files and converts them with
`diffusers.loaders.lora_conversion_utils` into diffusers keys `transformer.<module>...` and
`text_encoder.<module>...` (Flux's and SD3's CLIP-L, SD3's CLIP-G as `text_encoder_2.`). Those
module names are the ones of the transformer Easel loads (always diffusers' class), so the
converted layers become an easel.models.lora.LoraWeights with the transformer under component
"unet" (what ModelHandle.forward() binds) and are applied by the same ContextVar mechanism as the
SD families' LoRAs. Converted files are cached per (file, family).

Hand-written here, because diffusers has no code for it: grouping the converted keys into
(down, up, alpha) layers, reading alphas that diffusers returns apart from the weights (its
`network_alphas` and the PEFT `lora_adapter_metadata` of files diffusers saved), renaming
`lora_A` / `lora_B` to `lora_down` / `lora_up` in Flux files written in BFL's key layout (diffusers
recognises that layout only with kohya's suffixes; the two spellings are the same matrices), and
`describe`, which says what a file that does not fit looks like.
"""

from __future__ import annotations

import inspect
import json
import logging
import re
import threading
from collections import OrderedDict
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from easel.models.errors import ModelError
from easel.models.lora import LOADED_FILES, LoraLayer, LoraWeights, _peft_alpha, _read_file

# diffusers' component prefixes -> the LoRA components Easel binds ("unet": the denoiser)
COMPONENT_OF = {
    "transformer": "unet",
    "text_encoder": "text_encoder",
    "text_encoder_2": "text_encoder_2",
}
# the text parts a converted LoRA's text-encoder layers are for: diffusers' text_encoder is
# CLIP-L (Flux, SD3), text_encoder_2 is SD3's CLIP-G; no flow family's LoRA targets T5 or an LLM
TEXT_PART_KEYS = {"text_encoder": "l", "text_encoder_2": "g"}
_SUFFIXES = (
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".alpha", "alpha"),
)
# kohya names left after diffusers' conversion: layers its converter does not know
_KOHYA_LEFT = ("lora_unet_", "lora_te", "lora_transformer_")
_CONVERSION_ERRORS = (
    ValueError,
    KeyError,
    IndexError,
    TypeError,
    RuntimeError,
    NotImplementedError,
    AssertionError,
    AttributeError,
)


@dataclass(eq=False)
class FlowLoraWeights(LoraWeights):
    """A LoRA file converted for one flow family (`family`: its registry name)."""

    family: str = ""
    looks_like: str = ""  # what the file's keys say it is for (easel.models.lora_flow.describe)
    notes: tuple[str, ...] = ()  # what diffusers' converter warned about (keys it dropped)

    def warnings(self) -> list[str]:
        return super().warnings() + [f"LoRA {self.name!r}: diffusers: {n}" for n in self.notes]


def pipeline_class(family: Any) -> Any:
    """The family's diffusers pipeline class when its LoRAs load into a transformer (the flow
    families), else None (the SD families keep easel.models.lora's reading)."""
    name = getattr(family, "pipeline_class", None)
    if not name:
        return None
    import diffusers

    cls = getattr(diffusers, str(name), None)
    modules = getattr(cls, "_lora_loadable_modules", None) or ()
    if cls is None or "transformer" not in modules or not hasattr(cls, "lora_state_dict"):
        return None
    return cls


def is_flow_family(family: Any) -> bool:
    return pipeline_class(family) is not None


# -- reading -----------------------------------------------------------------------------
_FILES: OrderedDict[tuple[str, int, int, str], FlowLoraWeights] = OrderedDict()
_FILES_LOCK = threading.Lock()


def load_flow_lora(
    path: Path | str,
    family: Any,
    *,
    name: str | None = None,
    allow_unsafe_pickle: bool = False,
) -> FlowLoraWeights:
    """Read a LoRA file for `family` (a flow family), cached by path, size, time and family."""
    path = Path(path)
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"LoRA file {path} cannot be read: {exc.strerror or exc}") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns, str(family.name))
    with _FILES_LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    state_dict, metadata = _read_file(path, allow_unsafe_pickle)
    weights = flow_lora_from_state_dict(
        state_dict, family, name=name or path.name, path=path, metadata=metadata
    )
    with _FILES_LOCK:
        _FILES[key] = weights
        while len(_FILES) > LOADED_FILES:
            _FILES.popitem(last=False)
    return weights


def flow_lora_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    family: Any,
    *,
    name: str = "lora",
    path: Path | None = None,
    metadata: Mapping[str, str] | None = None,
) -> FlowLoraWeights:
    """Convert a LoRA state dict with `family`'s diffusers converters into layers per component
    (a ModelError naming the file, the family and what the file looks like when none fits)."""
    cls = pipeline_class(family)
    if cls is None:
        raise ModelError(f"{family.label} takes no transformer LoRA")
    where = str(path) if path is not None else name
    raw = {str(k): v for k, v in state_dict.items() if isinstance(v, torch.Tensor)}
    looks_like = describe(raw)
    try:
        with _diffusers_warnings() as notes:
            converted, alphas = _convert(cls, _bfl_as_kohya(raw, cls))
    except _CONVERSION_ERRORS as exc:
        raise ModelError(
            f"LoRA file {where} is not a LoRA for {family.label}: diffusers' {cls.__name__} "
            f"cannot convert it ({type(exc).__name__}: {str(exc)[:200]}); it looks like "
            f"{looks_like}"
        ) from exc
    peft_alphas = _metadata_alphas(metadata or {})

    fields: dict[str, dict[str, dict[str, torch.Tensor]]] = {}
    unknown: list[str] = []
    for prefix, keys in _by_component(converted).items():
        for key, tensor in keys.items():
            parsed = _split_suffix(key)
            if parsed is None or key.startswith(_KOHYA_LEFT):  # diffusers did not convert it
                unknown.append(f"{prefix}.{key}")
                continue
            stem, kind = parsed
            fields.setdefault(prefix, {}).setdefault(stem, {})[kind] = tensor

    layers: dict[str, dict[str, LoraLayer]] = {}
    for prefix, by_name in fields.items():
        for layer_name, parts in by_name.items():
            if "down" not in parts or "up" not in parts:
                unknown.extend(f"{prefix}.{layer_name}.{kind}" for kind in parts)
                continue
            down, up = parts["down"], parts["up"]
            if down.dim() not in (2, 4) or up.dim() != down.dim() or up.shape[1] != down.shape[0]:
                unknown.append(f"{layer_name} (shapes {tuple(down.shape)}, {tuple(up.shape)})")
                continue
            alpha_t = parts.get("alpha", alphas.get(f"{prefix}.{layer_name}"))
            alpha = (
                float(alpha_t.float().item())
                if alpha_t is not None
                else _peft_alpha(peft_alphas.get(prefix), layer_name)
            )
            layers.setdefault(COMPONENT_OF[prefix], {})[layer_name] = LoraLayer(down, up, alpha)
    if not layers:
        raise ModelError(
            f"LoRA file {where} is not a LoRA for {family.label}: diffusers' "
            f"{cls.__name__} reads no layer from it; it looks like {looks_like}"
        )
    return FlowLoraWeights(
        name,
        path,
        layers,
        tuple(unknown),
        family=str(family.name),
        looks_like=looks_like,
        notes=tuple(notes),
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread == self.thread and record.name.startswith("diffusers.loaders"):
            message = record.getMessage()
            self.messages.append(message if len(message) <= 300 else message[:300] + " ...")


@contextmanager
def _diffusers_warnings() -> Iterator[list[str]]:
    """The warnings diffusers' LoRA converters log in this thread meanwhile (such as the keys
    a converter does not know and drops), for the loader node to pass on."""
    handler = _Collect()
    root = logging.getLogger("diffusers")
    root.addHandler(handler)
    try:
        yield handler.messages
    finally:
        root.removeHandler(handler)


def _convert(
    cls: Any, state_dict: dict[str, torch.Tensor]
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """diffusers' `lora_state_dict` of the pipeline class: (diffusers-format keys, alphas kept
    apart by diffusers, keyed by layer name with its component prefix)."""
    kwargs: dict[str, Any] = {}
    if "return_alphas" in inspect.signature(cls.lora_state_dict).parameters:
        kwargs["return_alphas"] = True
    out = cls.lora_state_dict(dict(state_dict), **kwargs)
    alphas_in: Mapping[str, Any] = {}
    if isinstance(out, tuple):
        out, alphas_in = out[0], out[1] or {}
    alphas = {}
    for key, value in alphas_in.items():
        tensor = value if isinstance(value, torch.Tensor) else torch.tensor(float(value))
        alphas[key.removesuffix(".alpha")] = tensor
    return dict(out), alphas


def _by_component(converted: Mapping[str, torch.Tensor]) -> dict[str, dict[str, torch.Tensor]]:
    """{diffusers component: its keys in PEFT's names}. Keys without a component prefix are the
    transformer's (PEFT files of the bare transformer; diffusers 0.42's Flux kohya converter
    also returns the layers outside the blocks so). Older diffusers names (`lora_linear_layer`,
    which the kohya converters give text encoders) become PEFT's as diffusers' own
    load_lora_into_text_encoder / load_lora_adapter convert them."""
    from diffusers.utils.state_dict_utils import (
        convert_state_dict_to_peft,
        convert_unet_state_dict_to_peft,
    )

    out: dict[str, dict[str, torch.Tensor]] = {}
    for key, tensor in converted.items():
        prefix, _, rest = key.partition(".")
        if prefix not in COMPONENT_OF:
            prefix, rest = "transformer", key
        out.setdefault(prefix, {})[rest] = tensor
    for prefix, keys in out.items():
        if prefix != "transformer" and any(
            "lora_linear_layer" in k or "to_out_lora" in k for k in keys
        ):
            out[prefix] = convert_state_dict_to_peft(keys)
        elif prefix == "transformer" and not any(".lora_A." in k for k in keys):
            out[prefix] = convert_unet_state_dict_to_peft(keys)
    return out


def _bfl_as_kohya(state_dict: dict[str, torch.Tensor], cls: Any) -> dict[str, torch.Tensor]:
    """Flux.1 files in BFL's layout with PEFT's suffixes (`diffusion_model.double_blocks.0.
    img_attn.qkv.lora_A.weight`) spelled with kohya's, which diffusers' Flux reader converts."""
    from diffusers.loaders.lora_pipeline import FluxLoraLoaderMixin

    if not issubclass(cls, FluxLoraLoaderMixin):
        return state_dict
    if not any(
        re.search(r"(^|\.)(double|single)_blocks\.\d+\..*\.lora_A\.", k) for k in state_dict
    ):
        return state_dict
    return {
        k.replace(".lora_A.weight", ".lora_down.weight").replace(
            ".lora_B.weight", ".lora_up.weight"
        ): v
        for k, v in state_dict.items()
    }


def _split_suffix(key: str) -> tuple[str, str] | None:
    for suffix, kind in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], kind
    return None


def _metadata_alphas(metadata: Mapping[str, str]) -> dict[str, tuple[float, dict[str, float]]]:
    """PEFT's lora_alpha and alpha_pattern per diffusers component ("transformer", ...) from
    the `lora_adapter_metadata` diffusers writes into the .safetensors files it saves."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    out: dict[str, tuple[float, dict[str, float]]] = {}
    for prefix in COMPONENT_OF:
        alpha = data.get(f"{prefix}.lora_alpha")
        if isinstance(alpha, int | float):
            pattern = data.get(f"{prefix}.alpha_pattern") or {}
            out[prefix] = (
                float(alpha),
                {str(k): float(v) for k, v in pattern.items() if isinstance(v, int | float)},
            )
    return out


# -- what a file looks like ----------------------------------------------------------------
# (pattern on the key with "." and "_" alike, what a match says), first match wins
_SHAPES = (
    (r"double_stream_blocks|single_stream_blocks", "a HiDream transformer LoRA"),
    (r"joint_blocks", "an SD3 / SD3.5 MMDiT LoRA (original key layout)"),
    (
        r"(^|_)(double_blocks|single_blocks)_\d",
        "a Flux-style transformer LoRA (double_blocks / single_blocks: Flux.1, Flux.2, Chroma)",
    ),
    (
        r"single_transformer_blocks",
        "a Flux-style transformer LoRA in diffusers names (Flux.1, Flux.2, Chroma)",
    ),
    (r"transformer_blocks_\d+_(img|txt)_(mlp|mod)", "a Qwen-Image transformer LoRA"),
    (
        r"(^|_)(input_blocks|output_blocks|down_blocks|up_blocks|middle_block|mid_block)_",
        "a UNet LoRA (Stable Diffusion 1.x / 2.x / SDXL)",
    ),
    (r"(^|_)layers_\d+_(attention|feed_forward)", "a Lumina 2 / Z-Image transformer LoRA"),
    (r"transformer_blocks_\d+_", "an MMDiT transformer LoRA (SD3.5 or similar)"),
)
_TEXT_ONLY = r"^(lora_te\d?_|text_encoder|text_model|cond_stage_model|text_encoders_)"


def describe(keys: Iterable[str]) -> str:
    """What a LoRA's keys (or layer names) look like, for error messages: the model they are
    for by their module names, and the first keys."""
    names = list(keys)
    flat = [re.sub(r"[.]", "_", k) for k in names]
    shown = ", ".join(names[:2]) or "no tensors"
    for pattern, what in _SHAPES:
        if any(re.search(pattern, k) for k in flat):
            return f"{what} (keys such as {shown})"
    if flat and all(re.search(_TEXT_ONLY, k) for k in flat):
        return f"a text-encoder-only LoRA (keys such as {shown})"
    return f"no model Easel knows (keys such as {shown})"
