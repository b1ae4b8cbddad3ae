"""LoRA files (kohya, diffusers/PEFT and LDM key formats) and running a shared model with
LoRA-patched weights without ever writing into it.

Reading. A file's keys are grouped into layers (down, up, alpha) per component: "unet",
"text_encoder" (SD1/SD2's encoder, SDXL's CLIP-L) and "text_encoder_2" (SDXL's CLIP-G). Layer
names become the diffusers / transformers module names of the loaded models with diffusers' own
converters (`lora_conversion_utils`, `state_dict_utils`); what is hand-written here is only the
grouping of keys by suffix and the renaming of two LDM-layout prefixes (`diffusion_model.` and
ComfyUI's text-encoder prefixes) to kohya names, which diffusers then converts, because diffusers
has no converter for those prefixes. kohya names in the LDM (SGM) block layout need the UNet's
`layers_per_block`, so names are resolved against the module a LoRA is applied to.

Applying. `bind(module, component, patches)` returns a callable that runs the shared `module`
with W + strength * alpha / rank * up @ down for every patched layer. `torch.func.functional_call`
is not used: it swaps the module's parameters for the duration of a call, which another thread
running the same shared module (another workflow, another user) would see. Instead, the patched
Linear/Conv layers read their weight from a ContextVar that only the bound call sets, so a call
on another thread (or the plain module) always sees the base weights, which are never written.
Merged weights are cached per (module, patches) in a small LRU that follows the module's device.
"""

from __future__ import annotations

import contextvars
import json
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any
from weakref import WeakKeyDictionary

import torch
from torch import nn
from torch.nn import functional

from easel.models.errors import ModelError, UnsafePickleError

COMPONENTS = ("unet", "text_encoder", "text_encoder_2")
# ClipHandle.forward(part) binds "text_encoder:<part key>": SDXL's "g" is diffusers'
# text_encoder_2 (base and refiner), every other key is the one text_encoder.
TEXT_PART_COMPONENT = {"g": "text_encoder_2"}
MERGED_PER_MODULE = 2  # (patches -> merged weights) entries kept per shared module
LOADED_FILES = 8  # LoRA files kept read (by path, size and mtime)

# key suffix -> field; after diffusers' converters every layer ends in one of these
_SUFFIXES = (
    (".lora_down.weight", "down"),
    (".lora_up.weight", "up"),
    (".lora_A.weight", "down"),
    (".lora_B.weight", "up"),
    (".lora.down.weight", "down"),
    (".lora.up.weight", "up"),
    (".alpha", "alpha"),
)
_KOHYA_PREFIXES = {
    "lora_unet_": "unet",
    "lora_te_": "text_encoder",
    "lora_te1_": "text_encoder",
    "lora_te2_": "text_encoder_2",
}
_DIFFUSERS_PREFIXES = {
    "unet.": "unet",
    "text_encoder.": "text_encoder",
    "text_encoder_2.": "text_encoder_2",
}
# Text encoders in the original checkpoint layouts and in ComfyUI's own LoRA files: the rest of
# the key is the transformers CLIPTextModel path.
_LDM_TEXT_PREFIXES = {
    "cond_stage_model.transformer.": "text_encoder",
    "conditioner.embedders.0.transformer.": "text_encoder",
    "text_encoders.clip_l.transformer.": "text_encoder",
    "text_encoders.clip_g.transformer.": "text_encoder_2",
}
_LDM_UNET_PREFIX = "diffusion_model."
_UNET_TOP_LEVEL = (
    "down_blocks.",
    "mid_block.",
    "up_blocks.",
    "conv_in.",
    "conv_out.",
    "time_embedding.",
    "add_embedding.",
)


@dataclass(frozen=True, eq=False)
class LoraLayer:
    """One low-rank update: delta W = alpha / rank * up @ down (alpha None: scale 1)."""

    down: torch.Tensor  # [rank, in] or [rank, in, kh, kw] (LoCon)
    up: torch.Tensor  # [out, rank] or [out, rank, 1, 1]
    alpha: float | None = None

    @property
    def rank(self) -> int:
        return int(self.down.shape[0])

    @property
    def scale(self) -> float:
        return 1.0 if self.alpha is None else float(self.alpha) / self.rank

    def fits(self, weight: torch.Tensor) -> bool:
        """Whether up @ down has the weight's shape (out, in * kernel)."""
        return (
            self.up.shape[0] == weight.shape[0]
            and self.up.flatten(1).shape[1] == self.rank
            and self.down.flatten(1).shape[1] * self.up.shape[0] == weight.numel()
        )

    def delta(self, weight: torch.Tensor) -> torch.Tensor:
        """The float32 update of `weight`, on its device."""
        up = self.up.to(device=weight.device, dtype=torch.float32).flatten(1)
        down = self.down.to(device=weight.device, dtype=torch.float32).flatten(1)
        return (up @ down).reshape(weight.shape) * self.scale


@dataclass(frozen=True)
class Resolved:
    """A LoRA's layers for one module: {module path: its updates} and what could not be
    applied."""

    layers: dict[str, tuple[LoraLayer, ...]]
    missing: tuple[str, ...] = ()  # names with no such layer in the module
    mismatched: tuple[str, ...] = ()  # the layer exists but has another shape
    unsupported: tuple[str, ...] = ()  # the layer's type (embedding, ...) is not patched

    def problems(self) -> list[str]:
        """Human-readable counts of what was not applied (empty: everything was)."""
        out = []
        for what, names in (
            ("have no matching layer in the model", self.missing),
            ("have another shape than the model's layer", self.mismatched),
            ("target layer types Easel does not patch", self.unsupported),
        ):
            if names:
                shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
                out.append(f"{len(names)} LoRA layers {what} ({shown})")
        return out


@dataclass(eq=False)
class LoraWeights:
    """The layers of one LoRA file, grouped by component; `unknown` lists keys of the file
    that are not LoRA layers Easel reads (LoHa, LoKr, DoRA scales, diffs, ...)."""

    name: str
    path: Path | None
    layers: dict[str, dict[str, LoraLayer]]
    unknown: tuple[str, ...] = ()
    _resolved: WeakKeyDictionary[Any, dict[str, Resolved]] = field(
        default_factory=WeakKeyDictionary, repr=False
    )
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def components(self) -> list[str]:
        return [c for c in COMPONENTS if self.layers.get(c)]

    def warnings(self) -> list[str]:
        """What a user should hear about the file itself (keys skipped)."""
        if not self.unknown:
            return []
        shown = ", ".join(self.unknown[:3]) + (", ..." if len(self.unknown) > 3 else "")
        return [
            f"LoRA {self.name!r}: {len(self.unknown)} keys are not LoRA layers Easel reads "
            f"and were skipped ({shown})"
        ]

    def resolve(self, component: str, module: nn.Module) -> Resolved:
        """This LoRA's layers for `component`, keyed by the module's own submodule paths."""
        with self._lock:
            per_module = self._resolved.setdefault(module, {})
            if component not in per_module:
                per_module[component] = _resolve(self.layers.get(component, {}), component, module)
            return per_module[component]


# -- reading -----------------------------------------------------------------------------
_FILES: OrderedDict[tuple[str, int, int], LoraWeights] = OrderedDict()
_FILES_LOCK = threading.Lock()


def load_lora(
    path: Path | str, *, name: str | None = None, allow_unsafe_pickle: bool = False
) -> LoraWeights:
    """Read a LoRA file (kept in a small cache by path, size and modification time)."""
    path = Path(path)
    label = name or path.name
    try:
        stat = path.stat()
    except OSError as exc:
        raise ModelError(f"LoRA file {path} cannot be read: {exc.strerror or exc}") from exc
    key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
    with _FILES_LOCK:
        if key in _FILES:
            _FILES.move_to_end(key)
            return _FILES[key]
    state_dict, metadata = _read_file(path, allow_unsafe_pickle)
    weights = lora_from_state_dict(state_dict, name=label, path=path, metadata=metadata)
    with _FILES_LOCK:
        _FILES[key] = weights
        while len(_FILES) > LOADED_FILES:
            _FILES.popitem(last=False)
    return weights


def _read_file(
    path: Path, allow_unsafe_pickle: bool
) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError, safe_open

        try:
            with safe_open(str(path), framework="pt", device="cpu") as handle:
                metadata = dict(handle.metadata() or {})
                return {k: handle.get_tensor(k) for k in handle.keys()}, metadata  # noqa: SIM118
        except (SafetensorError, OSError, ValueError) as exc:
            raise ModelError(
                f"LoRA file {path} is not a readable .safetensors file: {exc}"
            ) from exc
    if not allow_unsafe_pickle:
        raise UnsafePickleError(path)
    try:
        loaded = torch.load(str(path), map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ModelError(f"LoRA file {path} could not be read: {exc}") from exc
    if isinstance(loaded, Mapping) and isinstance(loaded.get("state_dict"), Mapping):
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ModelError(f"LoRA file {path} holds no state dict")
    return {str(k): v for k, v in loaded.items() if isinstance(v, torch.Tensor)}, {}


def lora_from_state_dict(
    state_dict: Mapping[str, torch.Tensor],
    *,
    name: str = "lora",
    path: Path | None = None,
    metadata: Mapping[str, str] | None = None,
) -> LoraWeights:
    """Group a LoRA state dict into layers per component (a ModelError when none is usable)."""
    from diffusers.utils.state_dict_utils import (
        DIFFUSERS_OLD_TO_PEFT,
        DIFFUSERS_TO_PEFT,
        convert_state_dict,
        convert_unet_state_dict_to_peft,
    )

    where = str(path) if path is not None else name
    # component -> layer name -> {"down"/"up"/"alpha": tensor}
    fields: dict[str, dict[str, dict[str, torch.Tensor]]] = {c: {} for c in COMPONENTS}
    unknown: list[str] = []
    diffusers_keys: dict[str, dict[str, torch.Tensor]] = {c: {} for c in COMPONENTS}
    for key, tensor in state_dict.items():
        kohya = next((p for p in _KOHYA_PREFIXES if key.startswith(p)), None)
        diffusers = next((p for p in _DIFFUSERS_PREFIXES if key.startswith(p)), None)
        ldm_text = next((p for p in _LDM_TEXT_PREFIXES if key.startswith(p)), None)
        if kohya is not None:
            # kohya names stay as they are ("lora_unet_..."): converted when resolved
            _add_field(fields[_KOHYA_PREFIXES[kohya]], key, tensor, unknown)
        elif key.startswith(_LDM_UNET_PREFIX):
            parsed = _split_suffix(key)
            if parsed is None:
                unknown.append(key)
                continue
            stem, kind = parsed
            kohya_name = "lora_unet_" + stem.removeprefix(_LDM_UNET_PREFIX).replace(".", "_")
            fields["unet"].setdefault(kohya_name, {})[kind] = tensor
        elif ldm_text is not None:
            component = _LDM_TEXT_PREFIXES[ldm_text]
            diffusers_keys[component][key.removeprefix(ldm_text)] = tensor
        elif diffusers is not None:
            diffusers_keys[_DIFFUSERS_PREFIXES[diffusers]][key.removeprefix(diffusers)] = tensor
        elif key.startswith(_UNET_TOP_LEVEL):  # a UNet adapter saved without its prefix
            diffusers_keys["unet"][key] = tensor
        elif key.startswith("text_model."):
            diffusers_keys["text_encoder"][key] = tensor
        else:
            unknown.append(key)
    # diffusers' older layouts (attention-processor `to_q_lora`, `lora_linear_layer`) -> PEFT
    for component, keys in diffusers_keys.items():
        if not keys:
            continue
        if component == "unet":
            converted = convert_unet_state_dict_to_peft(keys)
        else:
            converted = convert_state_dict(
                convert_state_dict(keys, DIFFUSERS_OLD_TO_PEFT), DIFFUSERS_TO_PEFT
            )
        for key, tensor in converted.items():
            _add_field(fields[component], key, tensor, unknown)

    peft_alphas = _metadata_alphas(metadata or {})
    layers: dict[str, dict[str, LoraLayer]] = {}
    for component, by_name in fields.items():
        for layer_name, parts in by_name.items():
            if "down" not in parts or "up" not in parts:
                unknown.extend(f"{layer_name}.{kind}" for kind in parts)
                continue
            down, up = parts["down"], parts["up"]
            if down.dim() not in (2, 4) or up.dim() != down.dim() or up.shape[1] != down.shape[0]:
                unknown.append(f"{layer_name} (shapes {tuple(down.shape)}, {tuple(up.shape)})")
                continue
            alpha_t = parts.get("alpha")
            alpha = (
                float(alpha_t.float().item())
                if alpha_t is not None
                else _peft_alpha(peft_alphas.get(component), layer_name)
            )
            layers.setdefault(component, {})[layer_name] = LoraLayer(down, up, alpha)
    if not layers:
        found = ", ".join(list(state_dict)[:3]) or "no tensors"
        raise ModelError(
            f"{where} has no LoRA layer Easel can read (kohya lora_down/lora_up, "
            f"diffusers/PEFT lora_A/lora_B); its keys begin: {found}"
        )
    return LoraWeights(name, path, layers, tuple(unknown))


def _split_suffix(key: str) -> tuple[str, str] | None:
    for suffix, kind in _SUFFIXES:
        if key.endswith(suffix):
            return key[: -len(suffix)], kind
    return None


def _add_field(
    into: dict[str, dict[str, torch.Tensor]], key: str, tensor: torch.Tensor, unknown: list[str]
) -> None:
    parsed = _split_suffix(key)
    if parsed is None:
        unknown.append(key)
        return
    stem, kind = parsed
    into.setdefault(stem, {})[kind] = tensor


def _metadata_alphas(metadata: Mapping[str, str]) -> dict[str, tuple[float, dict[str, float]]]:
    """PEFT's lora_alpha and alpha_pattern per component, from the `lora_adapter_metadata` that
    diffusers writes into a .safetensors file: PEFT scales a layer by its alpha / its rank."""
    raw = metadata.get("lora_adapter_metadata")
    if not raw:
        return {}
    try:
        data = json.loads(raw)
    except ValueError:
        return {}
    out: dict[str, tuple[float, dict[str, float]]] = {}
    for component in COMPONENTS:
        alpha = data.get(f"{component}.lora_alpha")
        if isinstance(alpha, int | float):
            pattern = data.get(f"{component}.alpha_pattern") or {}
            out[component] = (
                float(alpha),
                {str(k): float(v) for k, v in pattern.items() if isinstance(v, int | float)},
            )
    return out


def _peft_alpha(peft: tuple[float, dict[str, float]] | None, layer_name: str) -> float | None:
    """The layer's alpha under PEFT's config: an alpha_pattern entry naming the layer (PEFT
    matches a pattern against the end of the module path), else lora_alpha."""
    if peft is None:
        return None
    alpha, pattern = peft
    for key, value in pattern.items():
        bare = key.lstrip("^")
        if layer_name == bare or layer_name.endswith("." + bare):
            return value
    return alpha


# -- names ---------------------------------------------------------------------------------
@lru_cache(maxsize=65536)
def _kohya_module_name(lora_name: str, layers_per_block: int | None) -> str | None:
    """The diffusers module path of a kohya layer name ("lora_unet_down_blocks_0_..." or the
    LDM layout "lora_unet_input_blocks_1_1_..."), by diffusers' own converters."""
    from diffusers.loaders.lora_conversion_utils import (
        _convert_non_diffusers_lora_to_diffusers,
        _maybe_map_sgm_blocks_to_diffusers,
    )
    from diffusers.utils.state_dict_utils import (
        DIFFUSERS_OLD_TO_PEFT,
        convert_state_dict,
        convert_unet_state_dict_to_peft,
    )

    dummy = torch.zeros(1)
    state: dict[str, torch.Tensor] = {
        f"{lora_name}.lora_down.weight": dummy,
        f"{lora_name}.lora_up.weight": dummy,
    }
    try:
        if lora_name.startswith("lora_unet_") and layers_per_block is not None:
            config = SimpleNamespace(layers_per_block=layers_per_block)
            state = _maybe_map_sgm_blocks_to_diffusers(state, config)
        converted, _ = _convert_non_diffusers_lora_to_diffusers(state)
    except (ValueError, KeyError, IndexError):
        return None
    if lora_name.startswith("lora_unet_"):
        converted = convert_unet_state_dict_to_peft(converted)
    else:
        converted = convert_state_dict(converted, DIFFUSERS_OLD_TO_PEFT)
    for key in converted:
        _, _, rest = key.partition(".")
        for suffix in (".lora_A.weight", ".lora.down.weight", ".lora_linear_layer.down.weight"):
            if rest.endswith(suffix):
                return rest[: -len(suffix)]
    return None


_PATCHABLE: dict[type[nn.Module], type[nn.Module]] = {}  # filled below the patchable classes


def _resolve(layers: Mapping[str, LoraLayer], component: str, module: nn.Module) -> Resolved:
    modules = dict(module.named_modules())
    config = getattr(module, "config", None)
    per_block = getattr(config, "layers_per_block", None) if component == "unet" else None
    found: dict[str, tuple[LoraLayer, ...]] = {}
    missing, mismatched, unsupported = [], [], []
    for name, layer in layers.items():
        target_name: str | None = name
        if name.startswith(tuple(_KOHYA_PREFIXES)):
            target_name = _kohya_module_name(name, per_block)
        # transformers 5's CLIPTextModel names its layers without the files' "text_model."
        candidates = (
            []
            if target_name is None
            else [target_name, "text_model." + target_name, target_name.removeprefix("text_model.")]
        )
        target = next((c for c in candidates if c in modules), None)
        if target is None:
            missing.append(name)
            continue
        sub = modules[target]
        weight = getattr(sub, "weight", None)
        if type(sub) not in _PATCHABLE and type(sub) not in _PATCHABLE.values():
            unsupported.append(name)
        elif not isinstance(weight, torch.Tensor) or not layer.fits(weight):
            mismatched.append(name)
        else:  # the same layer twice in one file (two key formats): both apply
            found[target] = (*found.get(target, ()), layer)
    return Resolved(found, tuple(missing), tuple(mismatched), tuple(unsupported))


def component_of(bound_as: str) -> str:
    """The LoRA component a `bind` component string names: "unet" or "text_encoder:<key>"."""
    if bound_as == "unet":
        return "unet"
    kind, _, key = bound_as.partition(":")
    if kind != "text_encoder":
        raise ValueError(f"unknown LoRA component {bound_as!r}: 'unet' or 'text_encoder:<key>'")
    return TEXT_PART_COMPONENT.get(key, "text_encoder")


# -- applying ----------------------------------------------------------------------------
# Patched weights of the current bound call: {layer module: weight}. A ContextVar, so each
# thread (and each asyncio task) sees only its own call's patches.
_ACTIVE: contextvars.ContextVar[Mapping[nn.Module, torch.Tensor] | None] = contextvars.ContextVar(
    "easel_lora_weights", default=None
)


def _active_weight(module: nn.Module) -> torch.Tensor | None:
    active = _ACTIVE.get()
    return None if active is None else active.get(module)


class LoraPatchableLinear(nn.Linear):
    """nn.Linear that uses a LoRA-patched weight while a bound call is active (else as is)."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = _active_weight(self)
        if weight is None:
            return super().forward(input)
        return functional.linear(input, weight, self.bias)


class LoraPatchableConv1d(nn.Conv1d):
    """nn.Conv1d that uses a LoRA-patched weight while a bound call is active."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = _active_weight(self)
        return self._conv_forward(input, self.weight if weight is None else weight, self.bias)


class LoraPatchableConv2d(nn.Conv2d):
    """nn.Conv2d that uses a LoRA-patched weight while a bound call is active."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = _active_weight(self)
        return self._conv_forward(input, self.weight if weight is None else weight, self.bias)


class LoraPatchableConv3d(nn.Conv3d):
    """nn.Conv3d that uses a LoRA-patched weight while a bound call is active."""

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        weight = _active_weight(self)
        return self._conv_forward(input, self.weight if weight is None else weight, self.bias)


_PATCHABLE.update(
    {
        nn.Linear: LoraPatchableLinear,
        nn.Conv1d: LoraPatchableConv1d,
        nn.Conv2d: LoraPatchableConv2d,
        nn.Conv3d: LoraPatchableConv3d,
    }
)
_SWAP_LOCK = threading.Lock()


def _make_patchable(sub: nn.Module) -> None:
    """Give a layer the ContextVar lookup. Its class becomes a subclass of its own (isinstance
    checks, state dict and parameters unchanged); its weights are not touched."""
    patchable = _PATCHABLE.get(type(sub))
    if patchable is not None:
        with _SWAP_LOCK:
            if type(sub) in _PATCHABLE:
                sub.__class__ = patchable


# module -> OrderedDict[(component, patches, device, dtype) -> {layer: merged weight}]
_MERGED: WeakKeyDictionary[nn.Module, OrderedDict[Any, dict[nn.Module, torch.Tensor]]] = (
    WeakKeyDictionary()
)
_MERGED_LOCK = threading.Lock()


def _patches_key(patches: tuple[Any, ...]) -> tuple[tuple[LoraWeights, float], ...]:
    out = []
    for patch in patches:
        weights, strength = patch
        if not isinstance(weights, LoraWeights):
            raise TypeError(f"a LoRA patch is (LoraWeights, strength), not {patch!r}")
        out.append((weights, float(strength)))
    return tuple(out)


def merged_weights(
    module: nn.Module, component: str, patches: tuple[Any, ...]
) -> dict[nn.Module, torch.Tensor]:
    """{layer: base weight + every patch's update} for the layers the patches touch (cached)."""
    lora_component = component_of(component)
    key_patches = _patches_key(patches)
    first = next(module.parameters(), None)
    device = None if first is None else first.device
    dtype = None if first is None else first.dtype
    key = (lora_component, key_patches, device, dtype)
    with _MERGED_LOCK:
        entries = _MERGED.setdefault(module, OrderedDict())
        for stale in [k for k in entries if k[2] != device or k[3] != dtype]:
            del entries[stale]  # the module moved: free the other device's copies
        if key in entries:
            entries.move_to_end(key)
            return entries[key]
        modules = dict(module.named_modules())
        deltas: dict[nn.Module, torch.Tensor] = {}
        with torch.no_grad():
            for weights, strength in key_patches:
                if strength == 0.0:
                    continue
                for path, layers in weights.resolve(lora_component, module).layers.items():
                    sub = modules[path]
                    for layer in layers:
                        update = layer.delta(_weight(sub)) * strength
                        deltas[sub] = deltas[sub] + update if sub in deltas else update
            merged = {}
            for sub, delta in deltas.items():
                _make_patchable(sub)
                base = _weight(sub)
                merged[sub] = (base.detach().float() + delta).to(base.dtype)
        entries[key] = merged
        while len(entries) > MERGED_PER_MODULE:
            entries.popitem(last=False)
        return merged


def _weight(layer: nn.Module) -> torch.Tensor:
    weight = layer.weight
    assert isinstance(weight, torch.Tensor)
    return weight


class PatchedModule:
    """`module` as a callable with LoRA patches: calling it runs the shared module with the
    patched weights; every other attribute (`config`, `dtype`, `device`, `parameters()`, ...)
    is the module's own."""

    def __init__(self, module: nn.Module, component: str, patches: tuple[Any, ...]) -> None:
        self.module = module
        self.component = component
        self.patches = _patches_key(patches)
        component_of(component)  # a clear error now rather than at the first call

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        with patched(self.module, self.component, self.patches):
            return self.module(*args, **kwargs)

    def __getattr__(self, name: str) -> Any:
        if name == "module":  # not set yet (unpickling): never recurse
            raise AttributeError(name)
        return getattr(self.module, name)

    def __repr__(self) -> str:
        names = ", ".join(f"{w.name}@{s:g}" for w, s in self.patches)
        return f"PatchedModule({type(self.module).__name__}, {self.component}, [{names}])"


@contextmanager
def patched(module: nn.Module, component: str, patches: tuple[Any, ...]) -> Iterator[None]:
    """While active (in this thread/context only), `module`'s patched layers use LoRA weights."""
    weights = merged_weights(module, component, patches)
    outer = _ACTIVE.get()
    token = _ACTIVE.set({**outer, **weights} if outer else weights)
    try:
        yield
    finally:
        _ACTIVE.reset(token)


def bind(module: Any, component: str, patches: tuple[Any, ...]) -> Callable[..., Any]:
    """A callable with `module`'s call signature that uses LoRA-patched weights (the contract
    of ModelHandle.forward() and ClipHandle.forward(part)); `module` itself when no patch
    changes anything."""
    key_patches = _patches_key(tuple(patches))
    if not isinstance(module, nn.Module) or all(s == 0.0 for _, s in key_patches):
        return module  # type: ignore[no-any-return]
    return PatchedModule(module, component, key_patches)
