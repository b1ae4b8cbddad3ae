"""GGUF weights files (ComfyUI-GGUF's `UnetLoaderGGUF` / `CLIPLoaderGGUF` files) read as plain
float state dicts, through the `gguf` package and diffusers' GGUF support (the optional extra
`easel[quantized]`).

A ComfyUI-GGUF diffusion-model file holds the model's tensors under their original (ComfyUI /
BFL) key names, each stored in its own GGML type: Q8_0, Q4_0, Q4_K, Q5_K, ... (quantised blocks),
or F16 / BF16 / F32. On load every quantised tensor is dequantised by diffusers' block
functions (its `dequantize_gguf_tensor`, in float32) into the model manager's dtype; F16, BF16
and F32 tensors are kept as they are (the family's loader casts them). Keys stay as stored,
so the families' recognisers and key converters see what they see in a safetensors file. The
block formats are not re-implemented here.

T5 encoders in llama.cpp's tensor names (`enc.blk.N.attn_q`, `token_embd`: city96's
t5-v1_1-xxl-encoder files) get transformers' names back through the gguf package's own
tensor-name map. Refused by name: other llama.cpp-named text encoders (Llama / Qwen files: they
need a tokenizer taken from the file and Llama's rotary permutation undone), GGML types
diffusers cannot dequantise, files the gguf package cannot read.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from easel.models.errors import ModelError

SUFFIX = ".gguf"
INSTALL = "pip install 'easel[quantized]'"
# ComfyUI-GGUF's converter stores tensors of more than 4 dimensions flattened, their shape in
# this metadata field (+ the tensor's name).
ORIG_SHAPE = "comfy.gguf.orig_shape."
# Tensor names only llama.cpp's converters give (a text encoder in llama.cpp's naming).
LLAMA_CPP_NAMES = ("blk.", "enc.blk.", "dec.blk.", "token_embd.", "output_norm.")


def is_gguf(path: Path) -> bool:
    return path.suffix.lower() == SUFFIX


def _reader(path: Path) -> Any:
    try:
        import gguf
    except ImportError:
        raise ModelError(
            f"{path.name} is a GGUF file, which Easel reads with the gguf package: {INSTALL}"
        ) from None
    try:
        return gguf.GGUFReader(str(path))
    except Exception as exc:
        raise ModelError(f"cannot read {path.name} as GGUF: {type(exc).__name__}: {exc}") from None


def _field(reader: Any, name: str) -> Any:
    """A metadata field's value (a string, or a list of ints), None when absent."""
    found = reader.fields.get(name)
    if found is None:
        return None
    value = found.contents()
    return value


def _orig_shapes(reader: Any) -> dict[str, tuple[int, ...]]:
    return {
        name.removeprefix(ORIG_SHAPE): tuple(int(n) for n in _field(reader, name))
        for name in reader.fields
        if name.startswith(ORIG_SHAPE)
    }


# A T5 encoder's tensors as transformers (and ComfyUI's t5xxl files) name them, per block:
# inverted through the gguf package's own tensor-name map to read llama.cpp-named T5 files.
T5_ARCHS = ("t5", "t5encoder")
_T5_BLOCK = (
    "layer.0.SelfAttention.q",
    "layer.0.SelfAttention.k",
    "layer.0.SelfAttention.v",
    "layer.0.SelfAttention.o",
    "layer.0.SelfAttention.relative_attention_bias",
    "layer.0.layer_norm",
    "layer.1.DenseReluDense.wi_0",
    "layer.1.DenseReluDense.wi_1",
    "layer.1.DenseReluDense.wi",
    "layer.1.DenseReluDense.wo",
    "layer.1.layer_norm",
)


def _t5_names(names: list[str]) -> dict[str, str]:
    """llama.cpp name -> transformers name of a T5 encoder's tensors, from gguf's map."""
    import gguf

    blocks = 1 + max((int(n.split(".")[2]) for n in names if n.startswith("enc.blk.")), default=0)
    table = gguf.get_tensor_name_map(gguf.MODEL_ARCH.T5ENCODER, blocks)
    # gated feed-forwards (T5 v1.1, UMT5) have wi_0 (ffn_gate) and wi_1 (ffn_up), others wi
    gated = any(".ffn_gate." in n for n in names)
    parts = [p for p in _T5_BLOCK if not p.endswith(".wi" if gated else ("wi_0", "wi_1"))]
    ours = ["shared", "encoder.final_layer_norm"] + [
        f"encoder.block.{i}.{part}" for i in range(blocks) for part in parts
    ]
    renames: dict[str, str] = {}
    for name in ours:
        theirs = table.get_name(name)
        if theirs is not None:
            for suffix in (".weight", ".bias"):
                renames[theirs + suffix] = name + suffix
    return renames


def _renames(path: Path, reader: Any, names: list[str]) -> dict[str, str]:
    """Tensor renames of a llama.cpp-named file (a T5 encoder's, back to transformers' names);
    other llama.cpp-named files are refused naming the architecture."""
    named = [n for n in names if n.startswith(LLAMA_CPP_NAMES)]
    if not named:
        return {}
    arch = _field(reader, "general.architecture") or "unknown"
    if arch in T5_ARCHS:
        renames = _t5_names(names)
        unknown = [n for n in names if n not in renames]
        if not unknown:
            return renames
        named = unknown
    raise ModelError(
        f"{path.name} is a GGUF file in llama.cpp's tensor names (architecture {arch!r}, "
        f"e.g. {named[0]}), which Easel does not read (T5 encoders excepted): use a GGUF file "
        "in the model's original key names, or its safetensors file"
    )


def shapes(path: Path) -> dict[str, Any]:
    """Key -> Shape (torch order, GGML type name) of a GGUF file, from its header: what the
    families' recognisers read (no tensor is dequantised)."""
    from easel.models.family_files import Shape

    reader = _reader(path)
    names = [t.name for t in reader.tensors]
    renames = _renames(path, reader, names)
    orig = _orig_shapes(reader)
    return {
        renames.get(t.name, t.name): Shape(
            orig.get(t.name, tuple(int(n) for n in reversed(t.shape.tolist()))),
            t.tensor_type.name,
        )
        for t in reader.tensors
    }


def read_gguf(path: Path, dtype: Any) -> dict[str, Any]:
    """All tensors of a GGUF file as torch tensors on the CPU: quantised ones dequantised by
    diffusers into `dtype`, F16 / BF16 / F32 ones in their own dtype."""
    import torch

    reader = _reader(path)  # the gguf package's absence named first
    names = [t.name for t in reader.tensors]
    renames = _renames(path, reader, names)
    orig = _orig_shapes(reader)
    from diffusers.models.model_loading_utils import load_gguf_checkpoint

    try:
        stored = load_gguf_checkpoint(str(path))
    except ValueError as exc:  # a GGML type diffusers cannot dequantise, named by diffusers
        first = str(exc).strip().splitlines()[0]
        raise ModelError(f"{path.name}: {first}") from None
    types = {t.name: t.tensor_type.name for t in reader.tensors}
    state: dict[str, Any] = {}
    for name in names:
        value = stored.pop(name)
        if hasattr(value, "quant_type"):
            plain = _dequantize(value)
            value = plain.to(torch.bfloat16 if types[name] == "BF16" else dtype)
        if name in orig:
            value = value.reshape(orig[name])
        state[renames.get(name, name)] = value
    return state


def _dequantize(value: Any) -> Any:
    """A GGUFParameter of diffusers dequantised in float32 by diffusers' function for its GGML
    type. This is diffusers' `dequantize_gguf_tensor` with the dtype argument its block
    functions take and it does not pass: without it Q8_0, Q4_K, ... come back in float16 (the
    scales' dtype), 10 bits of mantissa where the file's format gives more; ComfyUI-GGUF
    likewise dequantises in the target dtype. One float32 copy, then the manager's dtype."""
    import torch
    from diffusers.quantizers.gguf.utils import GGML_QUANT_SIZES, dequantize_functions
    from gguf.quants import quant_shape_from_byte_shape

    quant_type = value.quant_type
    block_size, type_size = GGML_QUANT_SIZES[quant_type]
    raw = value.as_tensor().view(torch.uint8)
    shape = quant_shape_from_byte_shape(tuple(raw.shape), quant_type)
    blocks = raw.reshape(-1, type_size)
    return dequantize_functions[quant_type](blocks, block_size, type_size, torch.float32).reshape(
        shape
    )
