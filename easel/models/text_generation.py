"""Text generation with a CLIP's language model (ComfyUI's TextGenerate): the causal LM built
around the loaded decoder without copying a weight, the chat prompt, and transformers'
`generate` with ComfyUI's sampling options.

- The decoder Easel's families load (Qwen3Model, Gemma2Model, LlamaModel, MistralModel) becomes
  transformers' `*ForCausalLM` (MODEL_FOR_CAUSAL_LM_MAPPING) built on the meta device, its
  `model` the loaded decoder and its LM head the tied input embedding (Qwen3-4B, Gemma 2) or a
  head the loader kept (`LM_HEAD` on the decoder). A decoder with neither has no way to pick
  tokens: GenerationError says so. A vision-language model loaded whole (Qwen2.5-VL,
  Qwen3-VL: `*ForConditionalGeneration`, vision tower included) generates as it is, images
  too, when its file has `lm_head.weight`. Their language model loaded alone
  (Qwen2_5_VLTextModel, Qwen3VLTextModel) goes inside Qwen2ForCausalLM / Qwen3ForCausalLM: on
  text alone the three multimodal rotary positions are equal, which is the plain 1-D rotary
  embedding those classes have (checked against the whole model in the tests).
- The prompt: the tokenizer's chat template when it has one; otherwise the chat format its
  special tokens name (ChatML, Gemma's turns, Llama 3's headers, Mistral's [INST]), as
  ComfyUI's per-model templates write them; the prompt as given when `template` is off.
- presence_penalty has no transformers logits processor, so PresencePenalty is hand-written
  (subtract the penalty from every token the answer already holds, as OpenAI's API and
  ComfyUI define it).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

# The attribute under which a loader keeps a file's separate `lm_head.weight` on a decoder
# that has no head of its own (a non-persistent buffer: it moves with the module).
LM_HEAD = "easel_lm_head"
# Tokens that end an assistant turn in the chat formats below (the tokenizer's EOS too).
END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<end_of_turn>", "<|eot_id|>", "</s>")
IMAGE_TOKENS = "<|vision_start|><|image_pad|><|vision_end|>"
# Vision-language models that generate whole, and the module whose `processor(tokenizer)`
# turns their images into patches (the one their family's image encoding uses).
VLM_PROCESSORS = {
    "Qwen2_5_VLForConditionalGeneration": "easel.models.qwen_text",
    "Qwen3VLForConditionalGeneration": "easel.models.qwen21_text",
}
# A VLM's language model loaded alone -> the text-only causal LM class around it.
TEXT_ONLY = {"Qwen2_5_VLTextModel": "Qwen2ForCausalLM", "Qwen3VLTextModel": "Qwen3ForCausalLM"}


class GenerationError(ValueError):
    """Why this CLIP cannot generate; `input_name` is what the node blames ("clip",
    "image")."""

    def __init__(self, message: str, input_name: str = "clip") -> None:
        super().__init__(message)
        self.input_name = input_name


@dataclass(frozen=True)
class Sampling:
    """ComfyUI's TextGenerate sampling options; `do_sample` False is greedy decoding."""

    do_sample: bool = False
    temperature: float = 0.7
    top_k: int = 64
    top_p: float = 0.95
    min_p: float = 0.05
    repetition_penalty: float = 1.05
    presence_penalty: float = 0.0
    seed: int = 0


def keep_lm_head(model: Any, weight: Any) -> None:
    """Keep a file's `lm_head.weight` on a decoder built without a head (for generation)."""
    model.register_buffer(LM_HEAD, weight, persistent=False)


def file_lm_head(state: Any, prefix: str) -> Any:
    """The `lm_head.weight` of a text encoder file whose decoder sits under `prefix`: under the
    prefix, beside the decoder (`language_model.model.` -> `language_model.lm_head`) or at the
    top (transformers' layout); None if none."""
    keys = [prefix + "lm_head.weight"]
    if prefix.endswith("model."):
        keys.append(prefix[: -len("model.")] + "lm_head.weight")
    keys.append("lm_head.weight")
    for key in keys:
        if key in state:
            return state[key]
    return None


def is_language_model(model: Any) -> bool:
    """Whether `model` is a decoder Easel can generate with (or say why not)."""
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    if type(model).__name__ in (*VLM_PROCESSORS, *TEXT_ONLY):
        return True
    config = getattr(model, "config", None)
    return (
        config is not None
        and type(config) in MODEL_FOR_CAUSAL_LM_MAPPING
        and hasattr(model, "get_input_embeddings")
    )


def language_part(clip: Any) -> Any:
    """The CLIP's language-model part (HiDream's Llama among its four), or GenerationError."""
    for part in clip.parts:
        if is_language_model(part.model):
            return part
    kinds = ", ".join(getattr(p, "kind", "?") for p in clip.parts) or "no"
    raise GenerationError(
        f"this CLIP ({clip.name}) has no language model ({kinds} text encoders): load a Qwen, "
        "Gemma, Llama or Mistral text encoder"
    )


def _head_weight(model: Any) -> Any:
    kept = getattr(model, LM_HEAD, None)
    if kept is not None:
        if tuple(kept.shape) != tuple(model.get_input_embeddings().weight.shape):
            raise GenerationError(
                f"the kept lm_head.weight {tuple(kept.shape)} does not fit this "
                f"{type(model).__name__}'s embeddings "
                f"{tuple(model.get_input_embeddings().weight.shape)}"
            )
        return kept
    if getattr(model.config, "tie_word_embeddings", False):
        return model.get_input_embeddings().weight
    raise GenerationError(
        f"this {type(model).__name__} has no language-model head: its file holds no "
        "lm_head.weight and its embeddings are not tied, so it cannot pick tokens"
    )


def causal_lm(model: Any) -> Any:
    """A transformers causal LM sharing `model`'s weights (nothing copied)."""
    import torch
    from transformers import GenerationConfig
    from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING

    name = type(model).__name__
    if name in VLM_PROCESSORS:
        if not isinstance(model.lm_head, torch.nn.Linear):
            raise GenerationError(
                f"this {name} file holds no lm_head.weight (its embeddings are not tied), so "
                "it cannot pick tokens"
            )
        return model
    head = _head_weight(model)
    if name in TEXT_ONLY:
        import transformers

        cls: Any = getattr(transformers, TEXT_ONLY[name])
        text = model.config
        config = cls.config_class(
            vocab_size=text.vocab_size,
            hidden_size=text.hidden_size,
            intermediate_size=text.intermediate_size,
            num_hidden_layers=text.num_hidden_layers,
            num_attention_heads=text.num_attention_heads,
            num_key_value_heads=text.num_key_value_heads,
            **({"head_dim": text.head_dim} if hasattr(text, "head_dim") else {}),
        )
    else:
        cls, config = MODEL_FOR_CAUSAL_LM_MAPPING[type(model.config)], model.config
    with torch.device("meta"):
        lm = cls(config)
    lm.model = model
    lm.lm_head = torch.nn.Linear(head.shape[1], head.shape[0], bias=False, device="meta")
    lm.lm_head.weight = (
        head
        if isinstance(head, torch.nn.Parameter)
        else torch.nn.Parameter(head, requires_grad=False)
    )
    lm.generation_config = GenerationConfig()
    return lm.eval().requires_grad_(False)


def _vocab(tokenizer: Any) -> set[str]:
    return set(tokenizer.get_vocab())


def chat_prompt(
    tokenizer: Any,
    prompt: str,
    *,
    system_prompt: str = "",
    thinking: bool = False,
    images: int = 0,
) -> tuple[str, bool]:
    """The prompt in the model's chat format, and whether the text already holds the special
    tokens (BOS) so the tokenizer must not add them."""
    user = IMAGE_TOKENS * images + prompt
    messages = [{"role": "system", "content": system_prompt}] if system_prompt else []
    messages.append({"role": "user", "content": user})
    if getattr(tokenizer, "chat_template", None):
        text = tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=True, enable_thinking=thinking
        )
        return str(text), True
    vocab = _vocab(tokenizer)
    if "<|im_start|>" in vocab:
        text = f"<|im_start|>system\n{system_prompt}<|im_end|>\n" if system_prompt else ""
        text += f"<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"
        if not thinking and "<think>" in vocab:
            text += "<think>\n\n</think>\n\n"
        return text, False
    if "<start_of_turn>" in vocab:  # Gemma: no system turn, the system text leads the user's
        lead = f"{system_prompt}\n\n" if system_prompt else ""
        return f"<start_of_turn>user\n{lead}{user}<end_of_turn>\n<start_of_turn>model\n", False
    if "<|start_header_id|>" in vocab:
        text = "".join(
            f"<|start_header_id|>{m['role']}<|end_header_id|>\n\n{m['content']}<|eot_id|>"
            for m in messages
        )
        return text + "<|start_header_id|>assistant<|end_header_id|>\n\n", False
    if "[INST]" in vocab:
        system = (
            f"[SYSTEM_PROMPT]{system_prompt}[/SYSTEM_PROMPT]"
            if system_prompt and "[SYSTEM_PROMPT]" in vocab
            else (f"{system_prompt}\n\n" if system_prompt else "")
        )
        return f"{system}[INST]{user}[/INST]", False
    lead = f"{system_prompt}\n\n" if system_prompt else ""
    return lead + user, False


def end_token_ids(tokenizer: Any) -> list[int]:
    """The tokens that end the answer: the tokenizer's EOS and the chat formats' turn ends."""
    vocab = tokenizer.get_vocab()
    ids = {int(vocab[token]) for token in END_TOKENS if token in vocab}
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return sorted(ids)


def presence_penalty(prompt_length: int, penalty: float) -> Any:
    """A logits processor subtracting `penalty` from every token the answer already holds."""
    import torch
    from transformers import LogitsProcessor

    class PresencePenalty(LogitsProcessor):
        def __call__(self, input_ids: Any, scores: Any) -> Any:
            answer = input_ids[:, prompt_length:]
            if answer.shape[1] == 0:
                return scores
            seen = torch.zeros_like(scores, dtype=torch.bool).scatter_(1, answer, True)
            return scores - penalty * seen.to(scores.dtype)

    return PresencePenalty()


def generation_config(sampling: Sampling, max_new_tokens: int, tokenizer: Any) -> Any:
    from transformers import GenerationConfig

    ends = end_token_ids(tokenizer)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else (ends or [0])[0]
    options: dict[str, Any] = {
        "max_new_tokens": max_new_tokens,
        "do_sample": sampling.do_sample,
        "eos_token_id": ends or None,
        "pad_token_id": int(pad),
    }
    if sampling.repetition_penalty != 1.0:
        options["repetition_penalty"] = sampling.repetition_penalty
    if sampling.do_sample:
        options.update(
            temperature=sampling.temperature,
            top_k=sampling.top_k or None,
            top_p=sampling.top_p,
            min_p=sampling.min_p or None,
        )
    else:  # greedy: transformers' defaults would otherwise warn about unused sampling options
        options.update(temperature=None, top_k=None, top_p=None)
    return GenerationConfig(**options)


def split_thinking(generated: str, prompt: str) -> tuple[str, str]:
    """(answer, reasoning): the reasoning is what precedes `</think>` when the answer opens a
    `<think>` block or the prompt ended in one (max_length may have cut it before its close)."""
    reasoning, _, text = generated.partition("</think>")
    if not reasoning.lstrip().startswith("<think>") and not prompt.rstrip().endswith("<think>"):
        return generated.strip(), ""
    return text.strip(), reasoning.replace("<think>", "", 1).strip()


def generate(
    clip: Any,
    prompt: str,
    *,
    max_new_tokens: int,
    sampling: Sampling,
    thinking: bool = False,
    template: bool = True,
    system_prompt: str = "",
    images: list[Any] | None = None,
) -> tuple[str, str]:
    """(generated text, reasoning) from the CLIP's language model. `images` are PIL images
    (Qwen2.5-VL loaded with its vision tower only). The text encoder is offloaded afterwards
    when the manager's policy says so."""
    import torch
    from transformers import LogitsProcessorList

    part = language_part(clip)
    model, tokenizer = part.model, part.tokenizer
    lm = causal_lm(model)
    if images and type(model).__name__ not in VLM_PROCESSORS:
        raise GenerationError(
            f"this CLIP's {type(model).__name__} reads no images: only Qwen2.5-VL or Qwen3-VL "
            "loaded with its vision tower does",
            "image",
        )
    if template:
        text, has_special = chat_prompt(
            tokenizer,
            prompt,
            system_prompt=system_prompt,
            thinking=thinking,
            images=len(images or []),
        )
    else:
        text, has_special = prompt, False
    manager = clip.manager
    if manager is not None and hasattr(manager, "place"):
        manager.place(model)
    device = next(model.parameters()).device
    if images:
        import importlib

        processor = importlib.import_module(VLM_PROCESSORS[type(model).__name__]).processor
        inputs = dict(processor(tokenizer)(text=[text], images=images, return_tensors="pt"))
        inputs["pixel_values"] = inputs["pixel_values"].to(next(model.parameters()).dtype)
    else:
        inputs = dict(tokenizer([text], add_special_tokens=not has_special, return_tensors="pt"))
    inputs = {k: v.to(device) for k, v in inputs.items() if k != "token_type_ids"}
    length = int(inputs["input_ids"].shape[1])
    if length == 0:
        raise GenerationError("the prompt is empty and the model's format adds nothing to it")
    processors = LogitsProcessorList()
    if sampling.do_sample and sampling.presence_penalty:
        processors.append(presence_penalty(length, sampling.presence_penalty))
    config = generation_config(sampling, max_new_tokens, tokenizer)
    devices = []  # the CUDA generator is forked too: sampling there draws from it
    if device.type == "cuda":
        devices = [device.index if device.index is not None else torch.cuda.current_device()]
    with torch.random.fork_rng(devices=devices), torch.inference_mode():
        torch.manual_seed(sampling.seed)
        output = lm.generate(**inputs, generation_config=config, logits_processor=processors)
    if manager is not None and hasattr(manager, "offload_text_encoders"):
        manager.offload_text_encoders([model])
    generated = tokenizer.decode(output[0, length:], skip_special_tokens=True)
    return split_thinking(generated, text)
