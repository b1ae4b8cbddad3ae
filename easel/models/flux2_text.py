"""Text conditioning for Flux.2: the prompt in its text encoder's chat format, padded to 512
tokens with an attention mask, through the language model; the hidden states of three layers
(dev's Mistral: 10, 20, 30; Klein's Qwen3: 9, 18, 27) stacked per token into one embedding,
as Flux2Pipeline and Flux2KleinPipeline encode a prompt.

- Chat formats are ComfyUI's literal ones, which are what the models' chat templates render for
  one prompt: Mistral `<s>[SYSTEM_PROMPT]{Black Forest Labs' system message}[/SYSTEM_PROMPT]
  [INST]{prompt}[/INST]`, Qwen3 `<|im_start|>user\\n{prompt}<|im_end|>\\n<|im_start|>assistant
  \\n<think>\\n\\n</think>\\n\\n` (thinking off). A tokenizer's own chat template is not used:
  ComfyUI's Qwen tokenizer folder carries Qwen2.5's, which renders another text.
- Padding and truncation follow the tokenizer (as the pipelines' `padding="max_length"` does),
  to 512 tokens; the transformer sees all 512 (the pipelines pass it no text mask).
- Like ComfyUI (its Flux.2 tokenizers disable weights), a prompt is taken literally: `(word:1.2)`
  and `embedding:` have no special meaning here.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from easel.models.families.flux2 import MAX_TEXT_TOKENS, MISTRAL_LAYERS, QWEN3_LAYERS

# Black Forest Labs' system message for Flux.2 dev (flux2 system_messages.py, as diffusers and
# ComfyUI carry it).
SYSTEM_MESSAGE = (
    "You are an AI that reasons about image descriptions. You give structured responses "
    "focusing on object relationships, object\nattribution and actions without speculation."
)
QWEN3_FORMAT = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n<think>\n\n</think>\n\n"
LAYERS = {"mistral": MISTRAL_LAYERS, "qwen3": QWEN3_LAYERS}


def chat_text(kind: str, prompt: str, tokenizer: Any) -> str:
    """The prompt in the text encoder's chat format (BOS included for Mistral)."""
    if kind == "mistral":
        bos = tokenizer.bos_token or "<s>"
        return f"{bos}[SYSTEM_PROMPT]{SYSTEM_MESSAGE}[/SYSTEM_PROMPT][INST]{prompt}[/INST]"
    return QWEN3_FORMAT.format(prompt)


def encode_part(clip: Any, part: Any, prompt: str, warnings: list[str]) -> tuple[Any, Any]:
    """(embeddings [1, 512, 3 * width] float32 on the CPU, attention mask [1, 512] bool)."""
    import torch

    tokenizer, model = part.tokenizer, part.model
    text = chat_text(part.key, prompt, tokenizer)
    full = tokenizer(text, add_special_tokens=False).input_ids
    if len(full) > MAX_TEXT_TOKENS:
        warnings.append(
            f"the prompt is {len(full)} tokens in the text encoder's chat format, more than "
            f"{MAX_TEXT_TOKENS}: the rest is cut off"
        )
    inputs = tokenizer(
        text,
        add_special_tokens=False,
        padding="max_length",
        truncation=True,
        max_length=MAX_TEXT_TOKENS,
        return_tensors="pt",
    )
    device = next(model.parameters()).device
    with torch.inference_mode():
        out = clip.forward(part)(
            input_ids=inputs["input_ids"].to(device),
            attention_mask=inputs["attention_mask"].to(device),
            output_hidden_states=True,
            use_cache=False,
        )
    layers = LAYERS[part.key]
    if len(out.hidden_states) <= max(layers):
        raise ValueError(
            f"the text encoder has {len(out.hidden_states) - 1} layers; Flux.2 reads layers "
            f"{', '.join(map(str, layers))}"
        )
    stacked = torch.stack([out.hidden_states[k] for k in layers], dim=1)  # [B, 3, T, D]
    b, n, t, d = stacked.shape
    embeds = stacked.permute(0, 2, 1, 3).reshape(b, t, n * d)
    return embeds.float().cpu(), inputs["attention_mask"].bool().cpu()


def encode_prompts(clip: Any, texts: Mapping[str, str]) -> Any:
    """A CONDITIONING for a Flux.2 CLIP (one part, "mistral" or "qwen3"): `texts[part.key]`.
    The text encoder is offloaded afterwards when the manager's policy says so."""
    from easel.models.text import Encoded

    (part,) = clip.parts
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(part.model)
    warnings: list[str] = []
    embeds, mask = encode_part(clip, part, texts.get(part.key, ""), warnings)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([part.model])
    return Encoded({"embeds": embeds, "pooled": None, "attention_mask": mask}, warnings)
