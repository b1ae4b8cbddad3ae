"""HiDream-I1 modules from ComfyUI's split files: the transformer (`diffusion_models/
hidream_i1_*.safetensors`) and the four text encoders of QuadrupleCLIPLoader (Long-CLIP-L and
Long-CLIP-G with their projections, T5-XXL, Llama 3.1 8B Instruct), in transformers' key layouts.

The transformer's keys are diffusers' own (diffusers' `convert_hidream_transformer_to_diffusers`
only strips `model.diffusion_model.`); configs are read off the shapes
(easel.models.families.hidream). Text encoders are transformers' CLIPTextModelWithProjection,
T5EncoderModel (easel.models.flux_loading) and LlamaModel. Llama's tokenizer is found on this
machine as the CLIP and T5 ones are (easel.models.tokenizers), never downloaded.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families import hidream
from easel.models.families.base import TextPart
from easel.models.families.recognise import summarise
from easel.models.flux_loading import (
    hold,
    storage_dtype,
    stored_as,
)
from easel.models.handles import ClipHandle, ModelHandle, TextEncoderPart
from easel.models.transformer_files import no_single_file

# -- the transformer --------------------------------------------------------------------------


def build_transformer(state: Mapping[str, Any], dtype: Any, path: Path) -> Any:
    """A HiDreamImageTransformer2DModel from a ComfyUI-layout state dict."""
    from diffusers import HiDreamImageTransformer2DModel
    from diffusers.loaders.single_file_utils import convert_hidream_transformer_to_diffusers

    from easel.models.state_dicts import load_into

    try:
        config = hidream.transformer_config(state)
        converted = convert_hidream_transformer_to_diffusers(dict(state))
        return load_into(
            HiDreamImageTransformer2DModel, config, converted, dtype, "HiDream transformer"
        )
    except ModelError as exc:
        raise ModelError(f"{path.name}: {exc}") from None
    except (RuntimeError, ValueError, KeyError, IndexError) as exc:
        raise ModelError(
            f"{path.name} looks like a HiDream-I1 transformer but does not fit that "
            f"architecture ({type(exc).__name__}: {exc})"
        ) from None


def recognise_diffusion_model(state: Mapping[str, Any]) -> bool:
    """Whether a diffusion-model file's keys are a HiDream transformer's (family_files)."""
    return hidream.prefix_of(state) is not None


def diffusion_model(
    name: str, path: Path, manager: Any, weight_dtype: str = "default"
) -> ModelHandle:
    """MODEL from `hidream_i1_*.safetensors` (ComfyUI's UNETLoader); the variant (its shift)
    from the file name. fp8 weight dtypes store in fp8 and compute in the manager's dtype."""
    from easel.models.transformer_files import read_weights

    storage = storage_dtype(weight_dtype)

    def load() -> Any:
        state = read_weights(path, manager)
        if hidream.prefix_of(state) is None:
            raise ModelError(f"{path.name} is not a HiDream-I1 transformer ({summarise(state)})")
        module = build_transformer(state, manager.dtype, path)
        return stored_as(module, storage, manager.dtype)

    module = manager.load_module((str(path.resolve()), f"hidream-transformer:{weight_dtype}"), load)
    family = hidream.variant_for(Path(name).name or path.name)
    return ModelHandle(
        name,
        module,
        dict(family.scheduler_config),
        family.latent.factor,
        manager,
        family=family,
    )


# -- text encoders ----------------------------------------------------------------------------
LLAMA_PREFIXES = ("model.", "")
CLIP_PREFIXES = ("", "transformer.")


def encoder_kind(state: Mapping[str, Any]) -> tuple[str, str] | None:
    """("clip", "t5" or "llama", key prefix) of a text encoder file, or None."""
    for prefix in ("", "transformer."):
        if prefix + "encoder.block.0.layer.0.SelfAttention.q.weight" in state:
            return "t5", prefix
    for prefix in LLAMA_PREFIXES:
        if prefix + "layers.0.self_attn.q_proj.weight" in state and (
            prefix + "layers.0.mlp.gate_proj.weight" in state
        ):
            return "llama", prefix
    for prefix in CLIP_PREFIXES:
        if prefix + "text_model.encoder.layers.0.self_attn.q_proj.weight" in state:
            return "clip", prefix
    return None


def clip_width(state: Mapping[str, Any], prefix: str) -> int:
    return int(state[prefix + "text_model.embeddings.token_embedding.weight"].shape[1])


def build_clip(
    state: Mapping[str, Any], prefix: str, part: TextPart, dtype: Any, tokenizer: Any
) -> Any:
    """A CLIP text tower with its projection (CLIPTextModelWithProjection), as HiDream's
    Long-CLIP-L and -G files hold them: transformers keys and `text_projection.weight`."""
    from transformers import CLIPTextModelWithProjection

    from easel.models.single_file import clip_config, token_ids
    from easel.models.state_dicts import load_into

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    if "text_projection.weight" not in sub:
        raise ModelError("the CLIP text encoder has no text_projection (HiDream pools through it)")
    p = "text_model."
    config = clip_config(
        sub,
        part,
        token=p + "embeddings.token_embedding.weight",
        position=p + "embeddings.position_embedding.weight",
        layers=re.escape(p) + r"encoder\.layers\.(\d+)\.",
        fc1=re.escape(p) + r"encoder\.layers\.\d+\.mlp\.fc1\.weight",
        tokens=token_ids(tokenizer),
        projection=int(sub["text_projection.weight"].shape[0]),
    )
    return load_into(
        CLIPTextModelWithProjection, config, sub, dtype, f"CLIP-{part.key.upper()}", strict=False
    )


# Llama 3.1 8B's constants that its weights do not show: heads of 128, its rope.
LLAMA_HEAD_DIM = 128
LLAMA_ROPE = {
    "rope_type": "llama3",
    "rope_theta": 500000.0,
    "factor": 8.0,
    "low_freq_factor": 1.0,
    "high_freq_factor": 4.0,
    "original_max_position_embeddings": 8192,
}
LLAMA_POSITIONS = 131072
LLAMA_EPS = 1e-5


def llama_config(state: Mapping[str, Any]) -> Any:
    """A transformers LlamaConfig read off the shapes (Llama 3.1's heads of 128 and rope)."""
    from transformers import LlamaConfig

    vocab, hidden = (int(n) for n in state["embed_tokens.weight"].shape)
    layers = len({k.split(".")[1] for k in state if k.startswith("layers.")})
    q_rows = int(state["layers.0.self_attn.q_proj.weight"].shape[0])
    kv_rows = int(state["layers.0.self_attn.k_proj.weight"].shape[0])
    if q_rows % LLAMA_HEAD_DIM or kv_rows % LLAMA_HEAD_DIM:
        raise ModelError(
            f"attention projections of {q_rows} and {kv_rows} rows are not Llama 3's heads "
            f"of {LLAMA_HEAD_DIM}"
        )
    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=hidden,
        intermediate_size=int(state["layers.0.mlp.gate_proj.weight"].shape[0]),
        num_hidden_layers=layers,
        num_attention_heads=q_rows // LLAMA_HEAD_DIM,
        num_key_value_heads=kv_rows // LLAMA_HEAD_DIM,
        head_dim=LLAMA_HEAD_DIM,
        max_position_embeddings=LLAMA_POSITIONS,
        rms_norm_eps=LLAMA_EPS,
        rope_parameters=dict(LLAMA_ROPE),
        use_cache=False,
    )


def build_llama(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A transformers LlamaModel (no language-model head) from a Llama checkpoint."""
    import torch
    from transformers import LlamaModel

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    sub = {k: v for k, v in sub.items() if not k.startswith("lm_head.")}
    config = llama_config(sub)
    with torch.device("meta"):
        model = LlamaModel(config)
    sub = {k: v.to(dtype) if v.is_floating_point() else v for k, v in sub.items()}
    result = model.load_state_dict(sub, strict=False, assign=True)
    if result.missing_keys:
        raise ModelError(
            f"the Llama weights do not match its shape: {len(result.missing_keys)} missing "
            f"(e.g. {result.missing_keys[:3]})"
        )
    # the rotary embedding's inverse frequencies are computed, not stored: build them for real
    model.rotary_emb = type(model.rotary_emb)(config=config)
    from easel.models.text_generation import file_lm_head, keep_lm_head

    head = file_lm_head(state, prefix)
    if head is not None:  # TextGenerate's head; HiDream's encoding never reads it
        keep_lm_head(model, head.to(dtype))
    return model.eval().requires_grad_(False)


# -- Llama's tokenizer ------------------------------------------------------------------------
LLAMA_HUB_FILES = (
    ("meta-llama/Llama-3.1-8B-Instruct", ""),
    ("meta-llama/Meta-Llama-3.1-8B-Instruct", ""),
    ("HiDream-ai/HiDream-I1-Full", "tokenizer_4/"),
    ("HiDream-ai/HiDream-I1-Dev", "tokenizer_4/"),
    ("HiDream-ai/HiDream-I1-Fast", "tokenizer_4/"),
)
LLAMA_BOS = "<|begin_of_text|>"


def is_llama_folder(folder: Path) -> bool:
    """A folder holding a Llama 3 tokenizer (tokenizer.json with <|begin_of_text|>)."""
    path = folder / "tokenizer.json"
    try:
        if not path.is_file() or not (folder / "tokenizer_config.json").is_file():
            return False
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    added = data.get("added_tokens", []) if isinstance(data, dict) else []
    return any(isinstance(t, dict) and t.get("content") == LLAMA_BOS for t in added)


def _llama_candidates(roots: list[Path], environ: Mapping[str, str]) -> Iterator[tuple[str, Path]]:
    from easel.models import discovery, model_paths, tokenizers

    configured = model_paths.configured_tokenizer("llama", environ)
    if configured is not None:
        yield "the configured tokenizer folder", configured
    for install in model_paths.comfyui_installs(roots):
        yield "a ComfyUI install", install / "comfy" / "text_encoders" / "llama_tokenizer"
    for kind in ("checkpoints", "text_encoders", "diffusion_models"):
        for entry in discovery.entries(kind, roots).values():
            if entry.format == "diffusers":
                for sub in ("tokenizer_4", "tokenizer", ""):
                    yield "a model folder in the models roots", entry.path / sub
    cache = tokenizers.hub_cache_dir(environ)
    for folder in tokenizers._hub_folders(cache, LLAMA_HUB_FILES, "tokenizer.json"):
        yield "the Hugging Face cache", folder


def find_llama_tokenizer(
    roots: list[Path], environ: Mapping[str, str] | None = None
) -> tuple[Path | None, list[str]]:
    """(the folder of a Llama 3 tokenizer or None, the places looked in)."""
    from easel.models import tokenizers

    env = os.environ if environ is None else environ
    looked: list[str] = []
    seen: set[Path] = set()
    for where, folder in _llama_candidates(roots, env):
        if folder in seen:
            continue
        seen.add(folder)
        if is_llama_folder(folder):
            return folder, looked
        if where != "the Hugging Face cache" and (
            where != "a model folder in the models roots" or folder.is_dir()
        ):
            looked.append(f"{where}: {folder}" + ("" if folder.is_dir() else " (missing)"))
    looked.append(f"the Hugging Face cache: {tokenizers.hub_cache_dir(env)}")
    return None, looked


def llama_tokenizer(path: Path, manager: Any) -> Any:
    """Llama 3's tokenizer for a Llama text encoder file, padding with its end token as
    HiDreamImagePipeline does; a ModelError naming every place looked in when there is none."""
    import transformers

    folder, looked = find_llama_tokenizer(manager.roots)
    if folder is None:
        raise ModelError(
            f"{path.name} holds no tokenizer, and a Llama 3 tokenizer (tokenizer.json with "
            f"{LLAMA_BOS}) was not found on this machine (Easel never downloads). Looked in: "
            + "; ".join(looked)
            + ". To fix: point Easel at a ComfyUI install (it has "
            "comfy/text_encoders/llama_tokenizer); or put a diffusers HiDream folder (with "
            "tokenizer_4/) in the models folder; or name a tokenizer folder with "
            "EASEL_LLAMA_TOKENIZER or [tokenizers] llama in the config file."
        )
    tokenizer = transformers.PreTrainedTokenizerFast.from_pretrained(
        str(folder), local_files_only=True
    )
    return with_hidream_padding(tokenizer)


LLAMA_EOT = "<|eot_id|>"


def with_hidream_padding(tokenizer: Any) -> Any:
    """`tokenizer` padding with Llama 3.1 Instruct's end-of-turn token, as HiDreamImagePipeline
    pads with its tokenizer's end token (<|eot_id|> in HiDream's and Meta's Instruct
    tokenizers). ComfyUI's llama_tokenizer ends with <|end_of_text|> and pads with a <pad>
    beyond Llama's vocabulary; ComfyUI pads HiDream's prompts with <|eot_id|> too."""
    tokens = tokenizer.get_vocab()
    tokenizer.pad_token = LLAMA_EOT if LLAMA_EOT in tokens else tokenizer.eos_token
    return tokenizer


# -- the four files of QuadrupleCLIPLoader ----------------------------------------------------
def _load_encoder(path: Path, manager: Any, role: str) -> tuple[Any, Any]:
    """(model, tokenizer) of one HiDream text encoder file of `role` ("clip_l", "clip_g",
    "t5" or "llama"), loaded once."""
    from easel.models import flux_loading, tokenizers
    from easel.models.transformer_files import read_weights

    key = str(path.resolve())

    def load() -> tuple[Any, Any]:
        state = read_weights(path, manager)
        found = encoder_kind(state)
        if found is None:
            raise ModelError(f"{path.name} is not a text encoder ({summarise(state)})")
        prefix = found[1]
        try:
            if role == "t5":
                tokenizer = tokenizers.t5_tokenizer(
                    checkpoint=path.name, contents="T5 encoder weights", roots=manager.roots
                )
                return flux_loading.build_t5(state, prefix, manager.dtype), tokenizer
            if role == "llama":
                tokenizer = llama_tokenizer(path, manager)
                return build_llama(state, prefix, manager.dtype), tokenizer
            part = hidream.HIDREAM_CLIP_G if role == "clip_g" else hidream.HIDREAM_CLIP_L
            tokenizer = manager.clip_tokenizer(path, part.pad_token)
            return build_clip(state, prefix, part, manager.dtype, tokenizer), tokenizer
        except ModelError as exc:
            raise ModelError(f"{path.name}: {exc}") from None
        except (RuntimeError, ValueError, KeyError, IndexError, StopIteration) as exc:
            raise ModelError(
                f"{path.name} looks like a {role} text encoder but does not fit that "
                f"architecture ({type(exc).__name__}: {exc})"
            ) from None

    loaded = manager.load_module((key, f"hidream-text-encoder:{role}"), load)
    hold(manager, key, {f"text_encoder:{role}": loaded[0]})
    return loaded  # type: ignore[no-any-return]


# OpenAI CLIP-L is 768 wide, OpenCLIP bigG 1280; their activations (quick GELU, GELU) are not
# in the weights, so which tower is which decides how it is built.
CLIP_L_WIDTH = 768


def roles(paths: list[Path], manager: Any) -> dict[str, Path]:
    """Which file is which text encoder: T5 and Llama by their keys; of the two CLIP towers
    the one wider than CLIP-L's 768 is CLIP-G (for towers of other widths, such as pruned or
    test ones, the wider; of equal widths, the later file, as ComfyUI lists clip_l first)."""
    from easel.models.family_files import keys_of

    found: dict[str, Path] = {}
    clips: list[tuple[int, int, Path]] = []
    for index, path in enumerate(paths):
        state = keys_of(path, manager)
        kind = encoder_kind(state)
        if kind is None:
            raise ModelError(
                f"{path.name} is not a text encoder HiDream takes ({summarise(state)}): it "
                "takes CLIP-L and CLIP-G (text_model.* with text_projection), T5 "
                "(encoder.block.*) and Llama 3.1 (model.layers.*) files"
            )
        if kind[0] == "clip":
            clips.append((clip_width(state, kind[1]), index, path))
            continue
        if kind[0] in found:
            raise ModelError(f"{path.name} is a second {kind[0]} text encoder")
        found[kind[0]] = path
    if len(clips) > 2:
        raise ModelError(f"{clips[2][2].name} is a third CLIP text encoder")
    clips.sort()
    if len(clips) == 2:
        found["clip_l"], found["clip_g"] = clips[0][2], clips[1][2]
    elif clips:
        found["clip_g" if clips[0][0] > CLIP_L_WIDTH else "clip_l"] = clips[0][2]
    missing = [k for k in ("clip_l", "clip_g", "t5", "llama") if k not in found]
    if missing:
        raise ModelError(
            "HiDream needs CLIP-L, CLIP-G, T5-XXL and Llama 3.1 text encoder files; "
            f"missing: {', '.join(missing)} (given: {', '.join(p.name for p in paths)})"
        )
    return found


def hidream_clip(name: str, paths: list[Path], manager: Any) -> ClipHandle:
    """CLIP (parts l, g, t5, llama) from ComfyUI's four HiDream text encoder files, in any
    order (QuadrupleCLIPLoader type hidream)."""
    found = roles(paths, manager)
    loaded = {role: _load_encoder(path, manager, role) for role, path in found.items()}
    parts = (
        TextEncoderPart("l", loaded["clip_l"][1], loaded["clip_l"][0], pooled=True),
        TextEncoderPart("g", loaded["clip_g"][1], loaded["clip_g"][0], pooled=True),
        TextEncoderPart("t5", loaded["t5"][1], loaded["t5"][0], kind="t5"),
        TextEncoderPart("llama", loaded["llama"][1], loaded["llama"][0], kind="llama"),
    )
    return ClipHandle(name, parts, manager, family=hidream.HIDREAM_FULL)


# -- diffusers folders (family_files.CHECKPOINTS) ---------------------------------------------
# HiDream has no all-in-one single files (ComfyUI ships it as split files).
is_checkpoint, single_file_checkpoint = no_single_file(
    "HiDream loads from split files or a diffusers folder"
)


def is_folder(folder: Path) -> bool:
    """Whether a diffusers folder is a HiDreamImagePipeline's."""
    from easel.models import loading

    for config in (folder / "model_index.json", folder / "transformer" / "config.json"):
        if config.is_file():
            name = str(loading.read_json(config).get("_class_name", ""))
            if name.startswith("HiDreamImage"):
                return True
    return False


def folder_checkpoint(name: str, folder: Path, manager: Any) -> tuple[ModelHandle, ClipHandle, Any]:
    """A diffusers HiDreamImagePipeline folder (transformer/, text_encoder/ .. text_encoder_4/,
    tokenizer/ .. tokenizer_4/, vae/, scheduler/). The variant comes from the folder's name;
    the shift from its scheduler config (`shift`, or UniPC's `flow_shift` in Full's)."""
    from easel.models import loading
    from easel.models.handles import VaeHandle

    index = loading.model_index(folder) if (folder / "model_index.json").is_file() else {}

    def part(sub: str, library: str, cls: str) -> Any:
        return manager.module(folder / sub, *index.get(sub, (library, cls)))

    transformer = part("transformer", "diffusers", "HiDreamImageTransformer2DModel")
    vae = part("vae", "diffusers", "AutoencoderKL")
    clip_l = part("text_encoder", "transformers", "CLIPTextModelWithProjection")
    clip_g = part("text_encoder_2", "transformers", "CLIPTextModelWithProjection")
    t5 = part("text_encoder_3", "transformers", "T5EncoderModel")
    # the base model of the folder's LlamaForCausalLM: its hidden states, no vocabulary head
    llama = manager.module(folder / "text_encoder_4", "transformers", "LlamaModel")
    tokenizers = [
        part(sub, "transformers", cls)
        for sub, cls in (
            ("tokenizer", "CLIPTokenizer"),
            ("tokenizer_2", "CLIPTokenizer"),
            ("tokenizer_3", "T5TokenizerFast"),
        )
    ]
    # Llama's: transformers 5 saves its class as TokenizersBackend; load it as the fast one
    tokenizers.append(
        manager.module(folder / "tokenizer_4", "transformers", "PreTrainedTokenizerFast")
    )
    with_hidream_padding(tokenizers[3])
    family = hidream.variant_for(folder.name)
    sched = loading.scheduler_config(folder / "scheduler")
    shift = sched.get("shift") if "flow_shift" not in sched else sched["flow_shift"]
    config = dict(family.scheduler_config)
    if shift is not None:
        config["shift"] = float(shift)
    vae_handle = VaeHandle(name, vae, manager)
    model = ModelHandle(
        name, transformer, config, vae_handle.scale_factor, manager, vae=vae_handle, family=family
    )
    parts = (
        TextEncoderPart("l", tokenizers[0], clip_l, pooled=True),
        TextEncoderPart("g", tokenizers[1], clip_g, pooled=True),
        TextEncoderPart("t5", tokenizers[2], t5, kind="t5"),
        TextEncoderPart("llama", tokenizers[3], llama, kind="llama"),
    )
    return model, ClipHandle(name, parts, manager, family=family), vae_handle
