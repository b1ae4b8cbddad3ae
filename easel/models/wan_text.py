"""Wan 2.1's text conditioning: UMT5-XXL's last hidden states, as ComfyUI's Wan text encoder and
diffusers' Wan pipelines make them: the prompt's tokens and EOS, padded to 512 tokens (more are
kept, as ComfyUI keeps them), the attention mask over the tokens and EOS, and the padding's
embeddings zeroed.

The encoder is transformers' UMT5EncoderModel (a relative attention bias in every layer), its
config read off the file's shapes. Its tokenizer, in this order:

1. the SentencePiece model ComfyUI stores in the file (`spiece_model`), read by transformers'
   T5Tokenizer when the `sentencepiece` and `protobuf` packages are installed;
2. a tokenizer folder the user configured ($EASEL_UMT5_TOKENIZER);
3. the `tokenizer/` of a diffusers Wan / ChronoEdit folder in the models roots;
4. the Hugging Face cache (google/umt5-xxl, the Wan 2.1 and ChronoEdit diffusers repositories).

Prompt weights follow ComfyUI: a weighted token is `z_empty + (z - z_empty) * w`.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from easel.models.errors import ModelError
from easel.models.families.wan import MAX_TOKENS
from easel.models.prompt_syntax import Embedding, parse_prompt

ENV = "EASEL_UMT5_TOKENIZER"
PREFIXES = ("text_encoders.umt5xxl.transformer.", "umt5xxl.transformer.", "")
PROBE = "encoder.block.{}.layer.0.SelfAttention.relative_attention_bias.weight"
HUB_FOLDERS = (
    ("google/umt5-xxl", ""),
    ("Wan-AI/Wan2.1-I2V-14B-720P-Diffusers", "tokenizer/"),
    ("Wan-AI/Wan2.1-I2V-14B-480P-Diffusers", "tokenizer/"),
    ("Wan-AI/Wan2.1-T2V-14B-Diffusers", "tokenizer/"),
    ("Wan-AI/Wan2.1-T2V-1.3B-Diffusers", "tokenizer/"),
    ("nvidia/ChronoEdit-14B-Diffusers", "tokenizer/"),
)
TOKENIZER_FILES = ("tokenizer.json", "spiece.model")


# -- the encoder --------------------------------------------------------------------------------
def umt5_prefix(state: Mapping[str, Any]) -> str | None:
    """Where a UMT5 encoder's keys start (a relative attention bias in blocks 0 and 1; T5 has
    one in block 0 only), or None."""
    for prefix in PREFIXES:
        if prefix + PROBE.format(0) in state and prefix + PROBE.format(1) in state:
            return prefix
    return None


def build_umt5(state: Mapping[str, Any], prefix: str, dtype: Any) -> Any:
    """A transformers UMT5EncoderModel with its config read off the shapes."""
    from transformers import UMT5Config, UMT5EncoderModel

    from easel.models.qwen_loading import build_module

    sub = {k[len(prefix) :]: v for k, v in state.items() if k.startswith(prefix)}
    sub.pop("spiece_model", None)
    embed = sub.get("shared.weight", sub.get("encoder.embed_tokens.weight"))
    if embed is None:
        raise ModelError("the UMT5 encoder has no token embedding (shared.weight)")
    sub.setdefault("shared.weight", embed)
    sub.setdefault("encoder.embed_tokens.weight", embed)
    vocab, d_model = (int(n) for n in embed.shape)
    buckets, heads = (int(n) for n in sub[PROBE.format(0)].shape)
    inner = int(sub["encoder.block.0.layer.0.SelfAttention.q.weight"].shape[0])
    layers = len({k.split(".")[2] for k in sub if k.startswith("encoder.block.")})
    config = UMT5Config(
        vocab_size=vocab,
        d_model=d_model,
        d_kv=inner // heads,
        d_ff=int(sub["encoder.block.0.layer.1.DenseReluDense.wi_0.weight"].shape[0]),
        num_layers=layers,
        num_heads=heads,
        relative_attention_num_buckets=buckets,
        relative_attention_max_distance=128,
        feed_forward_proj="gated-gelu",
        is_encoder_decoder=False,
        use_cache=False,
        pad_token_id=0,
        eos_token_id=1,
    )
    return build_module(UMT5EncoderModel, config, sub, dtype, "UMT5 encoder")


# -- the tokenizer ------------------------------------------------------------------------------
def _from_file(spiece: Any) -> Any | None:
    """transformers' T5Tokenizer over the file's SentencePiece model (None without the
    sentencepiece and protobuf packages, through which transformers reads it)."""
    import importlib.util

    try:
        missing = any(
            importlib.util.find_spec(name) is None for name in ("sentencepiece", "google.protobuf")
        )
    except ModuleNotFoundError:  # no `google` package at all
        missing = True
    if missing:
        return None
    from transformers import T5Tokenizer

    with tempfile.TemporaryDirectory(prefix="easel-umt5-") as folder:
        (Path(folder) / "spiece.model").write_bytes(bytes(spiece.cpu().numpy().tobytes()))
        return T5Tokenizer.from_pretrained(folder, extra_ids=0, legacy=False)


def _folders(roots: list[Path]) -> Iterator[tuple[str, Path]]:
    from easel.models import discovery
    from easel.models.loading import pipeline_class
    from easel.models.tokenizers import hub_cache_dir

    if os.environ.get(ENV):
        configured = Path(os.environ[ENV]).expanduser()
        yield f"${ENV}", configured
        yield f"${ENV}", configured / "tokenizer"
    for entry in discovery.entries("checkpoints", roots).values():
        if entry.format == "diffusers" and pipeline_class(entry.path).startswith(
            ("Wan", "ChronoEdit")
        ):
            yield "a Wan diffusers folder", entry.path / "tokenizer"
    from huggingface_hub import try_to_load_from_cache

    cache = hub_cache_dir()
    for repo, sub in HUB_FOLDERS:
        found = try_to_load_from_cache(repo, sub + "tokenizer_config.json", cache_dir=str(cache))
        if isinstance(found, str):
            yield "the Hugging Face cache", Path(found).parent


def umt5_tokenizer(path: Path, spiece: Any, roots: list[Path], vocab_size: int) -> Any:
    """The UMT5 tokenizer for the encoder file at `path` (see the module docstring)."""
    tokenizer = _from_file(spiece) if spiece is not None else None
    looked = []
    if tokenizer is None:
        if spiece is not None:
            looked.append(
                "the file's SentencePiece model (read with: pip install sentencepiece protobuf)"
            )
        else:
            looked.append("the file (it holds no spiece_model)")
        from transformers import AutoTokenizer

        for where, folder in _folders(roots):
            if any((folder / name).is_file() for name in TOKENIZER_FILES):
                tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
                break
            looked.append(f"{where}: {folder}")
        else:
            looked.append("the Hugging Face cache (google/umt5-xxl, Wan-AI/*-Diffusers)")
    if tokenizer is None:
        raise ModelError(
            f"{path.name}: no UMT5 tokenizer found. Looked in " + "; ".join(looked) + f". "
            f"Install sentencepiece and protobuf, or set ${ENV} to a folder with "
            "google/umt5-xxl's tokenizer"
        )
    if len(tokenizer) > vocab_size:
        raise ModelError(
            f"{path.name}: the UMT5 tokenizer found has {len(tokenizer)} tokens, more than the "
            f"encoder's {vocab_size} embeddings: it is another model's tokenizer"
        )
    return tokenizer


# -- encoding ------------------------------------------------------------------------------------
def umt5_part(clip: Any) -> Any:
    for part in clip.parts:
        if getattr(part, "kind", "") == "umt5":
            return part
    raise ValueError(
        "Wan 2.1 needs a UMT5 text encoder: load umt5_xxl with CLIPLoader type wan"
    )


def tokens(tokenizer: Any, text: str, warnings: list[str]) -> tuple[list[int], list[float]]:
    """Token ids (EOS included, no padding) and their weights."""
    ids: list[int] = []
    weights: list[float] = []
    for piece in parse_prompt(text):
        if isinstance(piece, Embedding):
            message = f"embedding {piece.name!r}: UMT5 takes no embeddings; left out"
            if message not in warnings:
                warnings.append(message)
            continue
        piece_ids = tokenizer(piece.text, add_special_tokens=False).input_ids
        ids.extend(int(i) for i in piece_ids)
        weights.extend([piece.weight] * len(piece_ids))
    ids.append(int(tokenizer.eos_token_id if tokenizer.eos_token_id is not None else 1))
    weights.append(1.0)
    return ids, weights


def _run(clip: Any, part: Any, ids: list[int], length: int) -> Any:
    """Hidden states [1, length, D] float32 on the CPU, zero beyond the tokens."""
    import torch

    model = part.model
    device = next(model.parameters()).device
    padded = ids + [0] * (length - len(ids))
    mask = torch.zeros(1, length, dtype=torch.long)
    mask[0, : len(ids)] = 1
    with torch.inference_mode():
        hidden = clip.forward(part)(
            input_ids=torch.tensor([padded], device=device), attention_mask=mask.to(device)
        ).last_hidden_state
    keep = (mask > 0).unsqueeze(-1).to(hidden.device)
    return torch.where(keep, hidden, torch.zeros_like(hidden)).float().cpu()


def encode(clip: Any, text: str) -> tuple[dict[str, Any], list[str]]:
    """A CONDITIONING ({"embeds": [1, T, D]}) for `text`, with the warnings."""
    import torch

    part = umt5_part(clip)
    warnings: list[str] = []
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    ids, weights = tokens(part.tokenizer, text, warnings)
    length = max(MAX_TOKENS, len(ids))
    hidden = _run(clip, part, ids, length)
    if any(w != 1.0 for w in weights):
        key = f"z_empty:{part.key}:{length}"
        if key not in clip.empty_cache:
            empty, _ = tokens(part.tokenizer, "", [])
            clip.empty_cache[key] = _run(clip, part, empty, length)
        z_empty = clip.empty_cache[key]
        w = torch.ones(1, length, 1)
        w[0, : len(weights), 0] = torch.tensor(weights)
        hidden = torch.where(w != 1.0, (hidden - z_empty) * w + z_empty, hidden)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return {"embeds": hidden, "pooled": None}, warnings


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """The family's text encoding (easel.models.text.encode_prompts)."""
    from easel.models.text import Encoded

    part = umt5_part(clip)
    conditioning, warnings = encode(clip, texts.get(part.key, ""))
    return Encoded(conditioning, warnings)
