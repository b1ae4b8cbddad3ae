"""Flux.2's text encoders from ComfyUI's single files: Mistral-Small-3.x's language model (dev)
and Qwen3 (Klein), as transformers' MistralModel and Qwen3Model with configs read off the
shapes, and their tokenizers found on this machine (nothing is downloaded).

Only the decoder stack is needed (Flux.2 reads hidden states, never logits), so an `lm_head`
or a vision tower in the file is left out. What shapes cannot say is the published models'
configuration: Mistral-Small-3.x's heads of 128 channels, rope theta 1e9 and RMS epsilon 1e-5;
Qwen3's rope theta 1e6 and epsilon 1e-6 (its head width is its query norm's).
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.flux2 import MISTRAL_LAYERS, QWEN3_LAYERS

# Where the decoder stack's keys start: ComfyUI's files, transformers' Mistral3 (old, new).
PREFIXES = ("model.", "", "language_model.model.", "model.language_model.")
MISTRAL_HEAD_DIM = 128
SETTINGS: dict[str, dict[str, Any]] = {
    "mistral": {"rope_theta": 1e9, "rms_norm_eps": 1e-5, "max_position_embeddings": 131072},
    "qwen3": {"rope_theta": 1e6, "rms_norm_eps": 1e-6, "max_position_embeddings": 40960},
}
# A token each tokenizer's vocabulary must have (its chat format's), to tell them apart.
MARKER_TOKENS = {"mistral": "[INST]", "qwen3": "<|im_start|>"}
# ComfyUI keeps Qwen's tokenizer in comfy/text_encoders/qwen25_tokenizer; Mistral's tokenizer
# (tekken) travels inside ComfyUI's Mistral file instead.
COMFY_FOLDERS = {"qwen3": "qwen25_tokenizer"}
LABELS = {"mistral": "Mistral-Small-3.x", "qwen3": "Qwen3"}
READ_LAYERS = {"mistral": MISTRAL_LAYERS, "qwen3": QWEN3_LAYERS}


def kind_of(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("mistral" or "qwen3", key prefix) of a language-model file, or None. Qwen3 has
    query/key norms, Mistral none."""
    for prefix in PREFIXES:
        if prefix + "layers.0.self_attn.q_proj.weight" in state:
            if prefix + "layers.0.self_attn.q_norm.weight" in state:
                return "qwen3", prefix
            return "mistral", prefix
    return None


def config_for(kind: str, state: Mapping[str, Any], prefix: str) -> Any:
    """The transformers config of the decoder stack under `prefix`."""
    from transformers import MistralConfig, Qwen3Config

    def shape(key: str) -> tuple[int, ...]:
        return tuple(int(n) for n in state[prefix + key].shape)

    vocab, hidden = shape("embed_tokens.weight")
    layers = 1 + max(
        int(k[len(prefix) :].split(".")[1]) for k in state if k.startswith(prefix + "layers.")
    )
    head = shape("layers.0.self_attn.q_norm.weight")[0] if kind == "qwen3" else MISTRAL_HEAD_DIM
    queries = shape("layers.0.self_attn.q_proj.weight")[0]
    keys = shape("layers.0.self_attn.k_proj.weight")[0]
    if queries % head or keys % head:
        raise ValueError(f"attention widths {queries}, {keys} do not split into heads of {head}")
    common = {
        "vocab_size": vocab,
        "hidden_size": hidden,
        "intermediate_size": shape("layers.0.mlp.gate_proj.weight")[0],
        "num_hidden_layers": layers,
        "num_attention_heads": queries // head,
        "num_key_value_heads": keys // head,
        "head_dim": head,
        "tie_word_embeddings": False,
        **SETTINGS[kind],
    }
    if kind == "qwen3":
        return Qwen3Config(**common)
    return MistralConfig(**common, sliding_window=None)


def build(kind: str, state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """MistralModel or Qwen3Model from the file's decoder stack, in `dtype`, on the CPU. The
    module is made on the meta device and takes the file's tensors (no random init); its
    rotary embedding, which no file holds, is made afresh."""
    import torch
    from transformers import MistralModel, Qwen3Model

    config = config_for(kind, state, prefix)
    cls = Qwen3Model if kind == "qwen3" else MistralModel
    sub = {
        k[len(prefix) :]: v.to(dtype) if v.is_floating_point() else v
        for k, v in state.items()
        if k.startswith(prefix) and not k.startswith(prefix + "lm_head")
    }
    sub = {k: v for k, v in sub.items() if k.split(".")[0] in ("embed_tokens", "layers", "norm")}
    with torch.device("meta"):
        model = cls(config)
    result = model.load_state_dict(sub, strict=False, assign=True)
    missing = [k for k in result.missing_keys if "rotary_emb" not in k]
    if missing:
        raise ModelError(
            f"the {LABELS[kind]} weights do not match its shape: {len(missing)} missing "
            f"(e.g. {missing[:3]})"
        )
    model.rotary_emb = type(model.rotary_emb)(config=config)
    if config.num_hidden_layers <= max(READ_LAYERS[kind]):
        # a pruned encoder (ComfyUI's 30-layer Mistral) ends at the last layer Flux.2 reads:
        # that layer's output is used as it is, without the final norm the full model has
        model.norm = torch.nn.Identity()  # type: ignore[assignment]
    else:
        from easel.models.text_generation import file_lm_head, keep_lm_head

        head = file_lm_head(state, prefix)
        if head is not None:  # TextGenerate's head (a pruned encoder cannot generate)
            keep_lm_head(model, head)
    return model.to(dtype).eval().requires_grad_(False)


# -- tokenizers ----------------------------------------------------------------------------
def _folders(
    kind: str, roots: list[Path], environ: Mapping[str, str]
) -> Iterator[tuple[str, Path]]:
    """(place described for a message, folder) in search order: the configured folder, a
    ComfyUI install's, diffusers model folders in the models roots."""
    from easel.models import discovery, model_paths

    configured = model_paths.configured_tokenizer(kind, environ)
    if configured is not None:
        yield "the configured tokenizer folder", configured
        yield "the configured tokenizer folder", configured / "tokenizer"
    if kind in COMFY_FOLDERS:
        for install in model_paths.comfyui_installs(roots):
            yield "a ComfyUI install", install / "comfy" / "text_encoders" / COMFY_FOLDERS[kind]
    for entry_kind in ("checkpoints", "text_encoders", "diffusion_models"):
        for entry in discovery.entries(entry_kind, roots).values():
            if entry.format == "diffusers":
                yield "a model folder in the models roots", entry.path / "tokenizer"


def _load_folder(kind: str, folder: Path) -> Any | None:
    """The tokenizer in `folder` when it is one of this kind's, else None."""
    import transformers

    if not folder.is_dir() or not any(
        (folder / name).is_file() for name in ("tokenizer.json", "vocab.json", "tekken.json")
    ):
        return None
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if MARKER_TOKENS[kind] not in tokenizer.get_vocab():
        return None
    return tokenizer


def _embedded_tekken(kind: str, state: Mapping[str, Any]) -> Any | None:
    """The tekken tokenizer ComfyUI stores in its Mistral files (`tekken_model`), or None."""
    from easel.models.flux2_tekken import TEKKEN_KEY

    if kind != "mistral":
        return None
    key = next((k for k in state if k.endswith(TEKKEN_KEY)), None)
    return None if key is None or not hasattr(state[key], "numpy") else state[key]


def _from_tekken(path: Path, data: Any) -> Any:
    from easel.models.flux2_tekken import tekken_tokenizer

    try:
        return tekken_tokenizer(data)
    except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
        raise ModelError(
            f"{path.name} holds a tekken_model that is not a tokenizer Easel can read "
            f"({type(exc).__name__}: {exc})"
        ) from None


def tokenizer(
    kind: str,
    path: Path,
    state: Mapping[str, Any],
    roots: list[Path],
    environ: Mapping[str, str] | None = None,
) -> Any:
    """The tokenizer of a Flux.2 text encoder: a folder the user named (EASEL_MISTRAL_TOKENIZER
    / EASEL_QWEN3_TOKENIZER or `[tokenizers]` in the config file), else the tekken tokenizer
    inside ComfyUI's Mistral file, else the first folder of its kind (a ComfyUI install's, a
    diffusers folder's tokenizer/). The error says where Easel looked."""
    env = os.environ if environ is None else environ
    looked: list[str] = []
    embedded = _embedded_tekken(kind, state)
    for where, folder in _folders(kind, roots, env):
        if embedded is not None and where != "the configured tokenizer folder":
            return _from_tekken(path, embedded)
        found = _load_folder(kind, folder)
        if found is not None:
            return found
        looked.append(f"{where}: {folder}" + ("" if folder.is_dir() else " (missing)"))
    if embedded is not None:
        return _from_tekken(path, embedded)
    steps = [
        f"name a {LABELS[kind]} tokenizer folder with EASEL_{kind.upper()}_TOKENIZER or "
        f"[tokenizers] {kind} in the config file",
        "put the diffusers model folder (with its tokenizer/) in the models folder",
    ]
    if kind in COMFY_FOLDERS:
        steps.insert(0, "point Easel at a ComfyUI install (it ships Qwen's tokenizer)")
    if kind == "mistral":
        looked.append(f"{path.name} itself (ComfyUI's Mistral files hold tekken_model: none)")
    raise ModelError(
        f"no {LABELS[kind]} tokenizer for {path.name} on this machine (Easel never "
        "downloads). Looked in: "
        + ("; ".join(looked) or "no folders (no models roots)")
        + ". To fix: "
        + "; ".join(steps)
        + "."
    )
