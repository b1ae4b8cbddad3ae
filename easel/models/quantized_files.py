"""ComfyUI's quantised weights files (int8, int8 ConvRot, W4A8, W4A4, NVFP4, MXFP8) read as plain
float state dicts, through comfy-kitchen (ComfyUI's own kernel library, the optional extra
`easel[quantized]`).

In these files each quantised layer `<layer>` holds its packed weight as `<layer>.weight`, the
format's scales beside it (`<layer>.weight_scale`, NVFP4's `weight_scale_2`, W4A8's
`weight_s_rel` / `weight_s_channel` / `weight_codebook`) and a `<layer>.comfy_quant` marker: a
uint8 tensor of JSON naming the format and its options (`{"format": "int8_tensorwise",
"convrot": true, "convrot_groupsize": 256}`). Some files list the markers in the safetensors
metadata instead (`_quantization_metadata: {"layers": {<layer>: {...}}}`).

Each such weight is rebuilt as comfy_kitchen's layout parameters and dequantised by that
layout's own `dequantize` (ConvRot's inverse rotation included) into the compute dtype; the
scale and marker tensors are dropped. The formats are not re-implemented here: the table below
only says which file tensor is which layout parameter. Scaled fp8 (`float8_e4m3fn`,
`float8_e5m2`) is left to easel.models.flux_loading.dequantize_scaled_fp8, which needs no
library.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError

MARKER = ".comfy_quant"
INSTALL = "pip install 'easel[quantized]'"
# Formats dequantize_scaled_fp8 already reads without comfy-kitchen.
SCALED_FP8 = ("float8_e4m3fn", "float8_e5m2")


@dataclass(frozen=True)
class Format:
    """A ComfyUI quantisation format: comfy_kitchen's layout class, which file tensor
    (`<layer>.<suffix>`) is which of its Params fields, the fields stored as raw bytes that are
    viewed as another dtype, and the marker's options the Params take."""

    layout: str
    tensors: Mapping[str, str]
    views: Mapping[str, str] = field(default_factory=dict)
    options: tuple[str, ...] = ()


# Format names as ComfyUI's comfy/quant_ops.py QUANT_ALGOS spells them; layouts and their fields
# as comfy_kitchen.tensor defines them (their `state_dict_tensors` give the same suffixes).
FORMATS: dict[str, Format] = {
    "int8_tensorwise": Format(
        "TensorWiseINT8Layout",
        {"weight_scale": "scale"},
        options=("convrot", "convrot_groupsize"),
    ),
    "asym_w4a8_int8": Format(
        "AsymW4A8Int8Layout",
        {
            "weight_s_rel": "scale",
            "weight_s_channel": "s_channel",
            "weight_codebook": "codebook",
            "weight_correction": "correction",
        },
        views={"scale": "float8_e4m3fn"},
        options=("group_size", "convrot_groupsize"),
    ),
    "convrot_w4a4": Format(
        "TensorCoreConvRotW4A4Layout",
        {"weight_scale": "scale"},
        options=("convrot_groupsize", "quant_group_size", "linear_dtype"),
    ),
    "nvfp4": Format(
        "TensorCoreNVFP4Layout",
        {"weight_scale": "block_scale", "weight_scale_2": "scale"},
        views={"block_scale": "float8_e4m3fn"},
    ),
    "mxfp8": Format(
        "TensorCoreMXFP8Layout",
        {"weight_scale": "scale"},
        views={"scale": "float8_e8m0fnu"},
    ),
}
# Tensors beside a quantised weight that only a quantised matmul uses.
EXTRAS = ("input_scale", "comfy_quant")


def markers(state: Mapping[str, Any], path: Path | None = None) -> dict[str, dict[str, Any]]:
    """Each quantised layer's options ({"format": ..., ...}), from its `.comfy_quant` tensor or
    the file's `_quantization_metadata`."""
    found: dict[str, dict[str, Any]] = {}
    if path is not None and path.suffix == ".safetensors":
        found.update(_metadata_markers(path))
    for key, value in state.items():
        if key.endswith(MARKER):
            found[key[: -len(MARKER)]] = _decode(value, key, path)
    return found


def _metadata_markers(path: Path) -> dict[str, dict[str, Any]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), "pt") as handle:
            text = (handle.metadata() or {}).get("_quantization_metadata")
        layers = json.loads(text).get("layers", {}) if text else {}
    except Exception:  # best effort: safetensors raises its own error type for a bad header
        return {}
    return {k: dict(v) for k, v in layers.items() if isinstance(v, dict)}


def _decode(value: Any, key: str, path: Path | None) -> dict[str, Any]:
    try:
        conf = json.loads(bytes(value.flatten().tolist()).decode("utf-8"))
    except (ValueError, TypeError, AttributeError):
        where = f"{path.name}: " if path is not None else ""
        raise ModelError(f"{where}{key} is not ComfyUI's JSON quantisation marker") from None
    if not isinstance(conf, dict) or "format" not in conf:
        where = f"{path.name}: " if path is not None else ""
        raise ModelError(f"{where}{key} names no quantisation format ({conf!r})")
    # some writers nest the layout's options under "params"
    nested = conf.get("params")
    return {**nested, **conf} if isinstance(nested, dict) else conf


def dequantize(state: Mapping[str, Any], path: Path, dtype: Any) -> dict[str, Any]:
    """`state` with every comfy-kitchen-quantised weight dequantised into `dtype` and its scales
    and marker dropped; scaled fp8 layers and unmarked tensors are left as they are. Without
    comfy-kitchen, or for a format it does not have, a ModelError names the file and format."""
    layers = {
        layer: conf
        for layer, conf in markers(state, path).items()
        if str(conf.get("format")) not in SCALED_FP8
    }
    out = {
        k: v for k, v in state.items() if not (k.endswith(MARKER) and k[: -len(MARKER)] in layers)
    }
    if not layers:
        return out
    unknown = sorted({str(c["format"]) for c in layers.values()} - set(FORMATS))
    if unknown:
        layer = next(k for k, c in layers.items() if str(c["format"]) == unknown[0])
        raise ModelError(
            f"{path.name} holds weights in the quantisation format {unknown[0]!r} (e.g. "
            f"{layer}), which Easel does not read; it reads {', '.join(FORMATS)} and scaled "
            "fp8: use a file in one of those or in bf16/fp16"
        )
    tensor_module = _comfy_kitchen(path, layers)
    for layer, conf in layers.items():
        spec = FORMATS[str(conf["format"])]
        weight_key = layer + ".weight"
        if weight_key not in out:
            raise ModelError(
                f"{path.name}: {layer} is marked {conf['format']} but has no {weight_key}"
            )
        tensors = {
            name: out.pop(f"{layer}.{suffix}")
            for suffix, name in spec.tensors.items()
            if f"{layer}.{suffix}" in out
        }
        for extra in EXTRAS:
            out.pop(f"{layer}.{extra}", None)
        out[weight_key] = _dequantize_one(
            tensor_module, spec, out[weight_key], tensors, conf, dtype, path, layer
        )
    return out


def _comfy_kitchen(path: Path, layers: Mapping[str, Mapping[str, Any]]) -> Any:
    try:
        from comfy_kitchen import tensor
    except ImportError:
        layer, conf = next(iter(layers.items()))
        raise ModelError(
            f"{path.name} holds ComfyUI-quantised weights ({conf['format']}, e.g. {layer}); "
            f"reading them needs comfy-kitchen: {INSTALL}"
        ) from None
    return tensor


def _dequantize_one(
    tensor_module: Any,
    spec: Format,
    qdata: Any,
    tensors: dict[str, Any],
    conf: Mapping[str, Any],
    dtype: Any,
    path: Path,
    layer: str,
) -> Any:
    """One layer's weight through comfy_kitchen's layout: Params from the file's tensors and the
    marker's options, the logical shape from the packed data (`orig_shape` in the marker wins)."""
    import torch

    layout = tensor_module.get_layout_class(spec.layout)
    fields = set(layout.Params.__dataclass_fields__)
    for name, view in spec.views.items():
        value = tensors.get(name)
        if value is not None and value.dtype == torch.uint8:
            tensors[name] = value.view(getattr(torch, view))
    options = {k: conf[k] for k in spec.options if k in conf and k in fields}
    try:
        shape = tuple(int(n) for n in conf["orig_shape"]) if "orig_shape" in conf else None
        params = layout.Params(
            orig_dtype=dtype,
            orig_shape=shape or _logical_shape(spec.layout, layout, qdata, tensors, options),
            **tensors,
            **options,
        )
        weight = layout.dequantize(qdata, params)
        if tuple(weight.shape) != tuple(params.orig_shape):  # NVFP4 / MXFP8 pad to blocks
            weight = weight[tuple(slice(0, n) for n in params.orig_shape)]
        return weight.to(dtype)
    except (TypeError, ValueError, RuntimeError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name}: {layer} ({conf['format']}) could not be dequantised: "
            f"{type(exc).__name__}: {exc}"
        ) from None


def _logical_shape(
    name: str, layout: Any, qdata: Any, tensors: Mapping[str, Any], options: Mapping[str, Any]
) -> tuple[int, ...]:
    """The unpacked weight's shape: 4-bit formats pack two values a byte along K; W4A8 may pack
    4 or 6 bits, so its K is read off the per-group scales (K / group_size columns)."""
    rows = int(qdata.shape[0])
    if name == "AsymW4A8Int8Layout":
        return (rows, int(tensors["scale"].shape[1]) * int(options.get("group_size", 16)))
    if name == "TensorCoreConvRotW4A4Layout":
        return (rows, int(qdata.shape[1]) * 2)
    if hasattr(layout, "get_logical_shape_from_storage"):
        return tuple(layout.get_logical_shape_from_storage(tuple(qdata.shape)))
    return tuple(int(n) for n in qdata.shape)
