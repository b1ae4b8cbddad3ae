"""TextGenerate (ComfyUI's node): a tiny random Qwen3 and Gemma 2, loaded as Z-Image's and
Lumina 2's text encoders from ComfyUI-layout files, generate what transformers'
AutoModelForCausalLM generates on the same weights; seeded sampling reproduces; what cannot
generate is named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from easel.core.context import Context
from easel.core.node import NodeError
from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.lumina_loading import build_language_model
from easel.models.text_generation import chat_prompt
from easel.nodes.text_generate import TextGenerate
from tests.fixtures.lumina_family import gemma2, gemma_tokenizer, qwen3, qwen_tokenizer, text_file

PROMPT = "a red circle"


def call(ctx: Context | None = None, **inputs: Any) -> dict[str, Any]:
    return TextGenerate.call(ctx or Context(), {**TextGenerate.value_defaults, **inputs})


def _loaded(kind: str, tmp_path: Path) -> tuple[Any, Any, Any]:
    """(tokenizer, reference decoder, Easel's decoder loaded from the ComfyUI-layout file)."""
    torch.manual_seed(3)
    if kind == "qwen3":
        tokenizer = qwen_tokenizer(tmp_path / "qwen")
        reference = qwen3(len(tokenizer))
    else:
        tokenizer = gemma_tokenizer(tmp_path / "gemma")
        reference = gemma2(len(tokenizer))
    with torch.no_grad():  # random weights large enough that greedy answers vary
        for param in reference.parameters():
            param.normal_(0.0, 0.5)
    loaded = build_language_model(kind, text_file(reference), "model.", torch.float32)
    return tokenizer, reference, loaded


def _clip(kind: str, tokenizer: Any, model: Any) -> ClipHandle:
    return ClipHandle("tiny", (TextEncoderPart(kind, tokenizer, model, kind=kind),), None)


def _reference_lm(reference: Any) -> Any:
    from transformers import AutoModelForCausalLM

    lm = AutoModelForCausalLM.from_config(reference.config)
    state = {"model." + k: v for k, v in reference.state_dict().items()}
    lm.load_state_dict(state, strict=False)
    lm.tie_weights()
    assert torch.equal(lm.lm_head.weight, reference.embed_tokens.weight)
    return lm.eval()


@pytest.mark.parametrize("kind", ["qwen3", "gemma2"])
def test_greedy_generation_equals_transformers_causal_lm(kind: str, tmp_path: Path) -> None:
    tokenizer, reference, loaded = _loaded(kind, tmp_path)
    lm = _reference_lm(reference)
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected_ids = lm.generate(
            **ids, max_new_tokens=12, do_sample=False, eos_token_id=None, pad_token_id=0
        )[0, ids["input_ids"].shape[1] :]
    expected = tokenizer.decode(expected_ids, skip_special_tokens=True).strip()
    assert len(expected_ids) == 12  # no end token drawn: the whole answer is compared
    # The answer may hold an end token by chance: Easel stops there, as ComfyUI does.
    out = call(
        clip=_clip(kind, tokenizer, loaded), prompt=PROMPT, max_length=12, sampling_mode="off"
    )
    ends = {tokenizer.eos_token_id, *(tokenizer.get_vocab().get(t) for t in ("<|im_end|>",))}
    stop = next((i for i, t in enumerate(expected_ids.tolist()) if t in ends), 12)
    assert (
        out["generated_text"]
        == tokenizer.decode(expected_ids[:stop], skip_special_tokens=True).strip()
    )
    assert out["thinking"] == ""
    assert expected  # the model wrote something


def test_the_prompt_is_the_chat_template_or_given_text(tmp_path: Path) -> None:
    tokenizer, _, _ = _loaded("qwen3", tmp_path)
    text, has_special = chat_prompt(tokenizer, PROMPT, system_prompt="be brief")
    assert has_special
    assert text == (
        "<|im_start|>system\nbe brief<|im_end|>\n<|im_start|>user\na red circle<|im_end|>\n"
        "<|im_start|>assistant\n<think>\n\n</think>\n\n"
    )
    thinking, _ = chat_prompt(tokenizer, PROMPT, thinking=True)
    assert thinking.endswith("<|im_start|>assistant\n")
    gemma = gemma_tokenizer(tmp_path / "g")
    gemma.add_special_tokens({"additional_special_tokens": ["<start_of_turn>", "<end_of_turn>"]})
    text, has_special = chat_prompt(gemma, PROMPT, system_prompt="be brief")
    assert not has_special  # no chat template: Gemma's turn format; the tokenizer adds BOS
    assert text == (
        "<start_of_turn>user\nbe brief\n\na red circle<end_of_turn>\n<start_of_turn>model\n"
    )


def test_seeded_sampling_reproduces_and_the_seed_changes_it(tmp_path: Path) -> None:
    tokenizer, _, loaded = _loaded("qwen3", tmp_path)
    clip = _clip("qwen3", tokenizer, loaded)
    options = dict(
        clip=clip,
        prompt=PROMPT,
        max_length=16,
        sampling_mode="on",
        temperature=1.5,
        top_k=0,
        top_p=1.0,
        min_p=0.0,
        repetition_penalty=1.0,
    )
    torch.manual_seed(123)
    first = call(**options, seed=7)["generated_text"]
    torch.rand(5)  # the global generator state does not matter
    again = call(**options, seed=7)["generated_text"]
    others = {call(**options, seed=seed)["generated_text"] for seed in (8, 9, 10)}
    assert first == again
    assert others - {first}
    state = torch.random.get_rng_state()
    call(**options, seed=7, presence_penalty=2.0)
    assert torch.equal(torch.random.get_rng_state(), state)  # sampling leaves it alone


def test_raw_prompt_without_template_is_continued(tmp_path: Path) -> None:
    tokenizer, reference, loaded = _loaded("qwen3", tmp_path)
    lm = _reference_lm(reference)
    ids = tokenizer([PROMPT], return_tensors="pt")
    with torch.no_grad():
        expected = lm.generate(
            **ids,
            max_new_tokens=6,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        )
    out = call(
        clip=_clip("qwen3", tokenizer, loaded),
        prompt=PROMPT,
        max_length=6,
        sampling_mode="off",
        use_default_template=False,
    )
    answer = tokenizer.decode(expected[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out["generated_text"] == answer.strip()


def test_thinking_is_split_from_the_answer() -> None:
    from easel.models.text_generation import split_thinking

    assert split_thinking("<think>plan</think> answer", "x") == ("answer", "plan")
    assert split_thinking("plan</think>answer", "prompt <think>\n") == ("answer", "plan")
    assert split_thinking("no reasoning </think> here", "x") == ("no reasoning </think> here", "")


def test_what_cannot_generate_is_named(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaModel

    tokenizer, _, loaded = _loaded("qwen3", tmp_path)
    clip = _clip("qwen3", tokenizer, loaded)
    with pytest.raises(NodeError) as caught:
        call(clip=clip, prompt=PROMPT, image=torch.rand(1, 3, 8, 8))
    assert caught.value.input == "image" and "Qwen3Model reads no images" in str(caught.value)
    with pytest.raises(NodeError) as caught:
        call(clip=clip, prompt=PROMPT, video=torch.rand(1, 3, 8, 8))
    assert caught.value.input == "video"
    untied = LlamaModel(
        LlamaConfig(
            vocab_size=len(tokenizer),
            hidden_size=16,
            intermediate_size=32,
            num_hidden_layers=1,
            num_attention_heads=2,
            tie_word_embeddings=False,
        )
    )
    with pytest.raises(NodeError) as caught:
        call(clip=_clip("llama", tokenizer, untied), prompt=PROMPT)
    assert caught.value.input == "clip" and "no language-model head" in str(caught.value)
    t5 = ClipHandle(
        "t5 only", (TextEncoderPart("t5", tokenizer, torch.nn.Linear(1, 1), kind="t5"),), None
    )
    with pytest.raises(NodeError) as caught:
        call(clip=t5, prompt=PROMPT)
    assert caught.value.input == "clip" and "no language model" in str(caught.value)


def test_a_kept_lm_head_is_used(tmp_path: Path) -> None:
    from transformers import LlamaConfig, LlamaForCausalLM

    from easel.models.text_generation import keep_lm_head

    tokenizer, _, _ = _loaded("qwen3", tmp_path)
    torch.manual_seed(0)
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        tie_word_embeddings=False,
    )
    reference = LlamaForCausalLM(config).eval()
    with torch.no_grad():
        reference.lm_head.weight.normal_(0.0, 2.0)
    keep_lm_head(reference.model, reference.lm_head.weight.detach())
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected = reference.generate(
            **ids,
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        )
    out = call(
        clip=_clip("llama", tokenizer, reference.model),
        prompt=PROMPT,
        max_length=8,
        sampling_mode="off",
    )
    answer = tokenizer.decode(expected[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out["generated_text"] == answer.strip()


def test_hidream_llama_file_keeps_its_lm_head_and_generates_as_llama_for_causal_lm(
    tmp_path: Path,
) -> None:
    """HiDream's loader keeps a Llama file's separate lm_head.weight for TextGenerate."""
    from transformers import LlamaForCausalLM

    from easel.models.hidream_loading import build_llama, llama_config

    tokenizer, _, _ = _loaded("qwen3", tmp_path)
    torch.manual_seed(4)
    shapes = {  # a tiny Llama 3 (heads of 128, as llama_config reads them)
        "embed_tokens.weight": torch.zeros(len(tokenizer), 32),
        "layers.0.self_attn.q_proj.weight": torch.zeros(128, 32),
        "layers.0.self_attn.k_proj.weight": torch.zeros(128, 32),
        "layers.0.mlp.gate_proj.weight": torch.zeros(48, 32),
    }
    reference = LlamaForCausalLM(llama_config(shapes)).eval()
    with torch.no_grad():
        for param in reference.parameters():
            param.normal_(0.0, 0.5)
    state = {k: v.clone() for k, v in reference.state_dict().items()}
    assert "lm_head.weight" in state and not reference.config.tie_word_embeddings
    loaded = build_llama(state, "model.", torch.float32)
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected = reference.generate(
            **ids,
            max_new_tokens=8,
            do_sample=False,
            pad_token_id=0,
            eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"),
        )
    out = call(
        clip=_clip("llama", tokenizer, loaded), prompt=PROMPT, max_length=8, sampling_mode="off"
    )
    answer = tokenizer.decode(expected[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert out["generated_text"] == answer.strip()
    del state["lm_head.weight"]  # a file without a head: refused, naming why
    with pytest.raises(NodeError) as caught:
        call(clip=_clip("llama", tokenizer, build_llama(state, "model.", torch.float32)))
    assert caught.value.input == "clip" and "lm_head.weight" in str(caught.value)


def _vlm(kind: str, vocab: int, tokens: dict[str, int]) -> Any:
    """A tiny random Qwen2.5-VL or Qwen3-VL, vision tower included."""
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen3VLConfig,
        Qwen3VLForConditionalGeneration,
    )

    torch.manual_seed(5)
    text: dict[str, Any] = dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        num_key_value_heads=1,
        rms_norm_eps=1e-6,
    )
    if kind == "qwen3-vl":
        text.update(
            head_dim=16,
            rope_parameters={
                "rope_type": "default",
                "rope_theta": 5e6,
                "mrope_section": [4, 2, 2],
                "mrope_interleaved": True,
            },
        )
        vision = dict(
            depth=1,
            hidden_size=16,
            num_heads=1,
            intermediate_size=32,
            out_hidden_size=32,
            patch_size=16,
            spatial_merge_size=2,
            temporal_patch_size=2,
            num_position_embeddings=16,
            deepstack_visual_indexes=[0],
        )
        config: Any = Qwen3VLConfig(
            text_config=text, vision_config=vision, tie_word_embeddings=False, **tokens
        )
        model: Any = Qwen3VLForConditionalGeneration(config)
    else:
        text.update(
            rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": [2, 3, 3]}
        )
        vision = dict(
            depth=1,
            hidden_size=16,
            num_heads=1,
            intermediate_size=32,
            out_hidden_size=32,
            patch_size=14,
            spatial_merge_size=2,
            temporal_patch_size=2,
            window_size=56,
            fullatt_block_indexes=[0],
        )
        config = Qwen2_5_VLConfig(
            text_config=text, vision_config=vision, tie_word_embeddings=False, **tokens
        )
        model = Qwen2_5_VLForConditionalGeneration(config)
    with torch.no_grad():
        for param in model.parameters():
            param.normal_(0.0, 0.5)
    return model.eval()


@pytest.mark.parametrize("kind", ["qwen2.5-vl", "qwen3-vl"])
def test_vision_language_models_generate_whole_and_their_language_model_alone(
    kind: str, tmp_path: Path
) -> None:
    """Whole (vision tower included) and language model alone (with the file's head), the
    text-only answer is the whole model's own `generate`."""
    from easel.models.text_generation import keep_lm_head

    tokenizer, _, _ = _loaded("qwen3", tmp_path)
    vision_tokens = ["<|vision_start|>", "<|vision_end|>", "<|image_pad|>", "<|video_pad|>"]
    tokenizer.add_tokens(vision_tokens, special_tokens=True)
    ids_of = tokenizer.convert_tokens_to_ids
    tokens = {
        "vision_start_token_id": ids_of("<|vision_start|>"),
        "vision_end_token_id": ids_of("<|vision_end|>"),
        "image_token_id": ids_of("<|image_pad|>"),
        "video_token_id": ids_of("<|video_pad|>"),
    }
    whole = _vlm(kind, len(tokenizer), tokens)
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected = whole.generate(
            **ids, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None
        )[0, ids["input_ids"].shape[1] :]
    ends = {ids_of("<|im_end|>"), tokenizer.eos_token_id}
    stop = next((i for i, t in enumerate(expected.tolist()) if t in ends), len(expected))
    answer = tokenizer.decode(expected[:stop], skip_special_tokens=True).strip()
    assert answer
    out = call(
        clip=_clip("qwen", tokenizer, whole), prompt=PROMPT, max_length=8, sampling_mode="off"
    )
    assert out["generated_text"] == answer
    alone = whole.model.language_model
    keep_lm_head(alone, whole.lm_head.weight.detach())
    out = call(
        clip=_clip("qwen", tokenizer, alone), prompt=PROMPT, max_length=8, sampling_mode="off"
    )
    assert out["generated_text"] == answer
    # An image: the family's processor makes the patches, the whole model reads them.
    import importlib

    from easel.models.qwen_text import to_pil
    from easel.models.text_generation import VLM_PROCESSORS

    torch.manual_seed(6)
    image = torch.rand(1, 3, 64, 64)
    processor = importlib.import_module(VLM_PROCESSORS[type(whole).__name__]).processor
    text, _ = chat_prompt(tokenizer, PROMPT, images=1)
    inputs = processor(tokenizer)(text=[text], images=to_pil(image), return_tensors="pt")
    with torch.no_grad():
        seen = whole.generate(
            **inputs, max_new_tokens=8, do_sample=False, pad_token_id=0, eos_token_id=None
        )[0, inputs["input_ids"].shape[1] :]
    stop = next((i for i, t in enumerate(seen.tolist()) if t in ends), len(seen))
    out = call(
        clip=_clip("qwen", tokenizer, whole),
        prompt=PROMPT,
        max_length=8,
        sampling_mode="off",
        image=image,
    )
    assert out["generated_text"] == tokenizer.decode(seen[:stop], skip_special_tokens=True).strip()
    assert int((inputs["input_ids"] == tokens["image_token_id"]).sum()) > 1  # patches were read
    with pytest.raises(NodeError) as caught:
        call(clip=_clip("qwen", tokenizer, alone), prompt=PROMPT, image=image)
    assert caught.value.input == "image"


def test_a_krea2_text_encoder_file_generates_as_qwen3_vl_with_its_tied_head(
    tmp_path: Path,
) -> None:
    """Krea 2's CLIP (Qwen3-VL-4B's language model alone, loaded from ComfyUI's file layout)
    answers as the whole Qwen3-VL with its head tied to the embedding."""
    from transformers import Qwen3VLForConditionalGeneration

    from easel.models.krea2_loading import build_language_model
    from tests.fixtures import krea2_family, qwen_image_family

    tokenizer = qwen_image_family._tokenizer(qwen_image_family.write_tokenizer(tmp_path / "tok"))
    torch.manual_seed(7)
    encoder = krea2_family.text_encoder(tokenizer)
    with torch.no_grad():
        for param in encoder.parameters():
            param.normal_(0.0, 0.5)
    state = krea2_family.text_encoder_file(encoder)
    loaded = build_language_model(state, "model.", torch.float32)
    config = encoder.config
    config.tie_word_embeddings = True
    whole = Qwen3VLForConditionalGeneration(config).eval()
    whole.model.load_state_dict(encoder.state_dict())
    whole.tie_weights()
    assert (
        whole.lm_head.weight.data_ptr() == whole.model.language_model.embed_tokens.weight.data_ptr()
    )
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected = whole.generate(
            **ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None
        )[0, ids["input_ids"].shape[1] :]
    ends = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
    stop = next((i for i, t in enumerate(expected.tolist()) if t in ends), len(expected))
    out = call(
        clip=_clip("krea2", tokenizer, loaded), prompt=PROMPT, max_length=6, sampling_mode="off"
    )
    assert out["generated_text"]
    assert (
        out["generated_text"] == tokenizer.decode(expected[:stop], skip_special_tokens=True).strip()
    )


def test_a_qwen_image21_text_only_file_keeps_its_lm_head(tmp_path: Path) -> None:
    """Qwen-Image 2.1's loader, given a Qwen3-VL file without its vision tower, keeps the
    file's lm_head.weight: the language model alone answers as the whole model."""
    from easel.models.qwen21_loading import build_text_encoder

    tokenizer, _, _ = _loaded("qwen3", tmp_path)
    whole = _vlm("qwen3-vl", len(tokenizer), {})
    state = {"model." + k: v.clone() for k, v in whole.model.language_model.state_dict().items()}
    state["lm_head.weight"] = whole.lm_head.weight.detach().clone()
    alone = build_text_encoder(tmp_path / "qwen3vl.safetensors", state, torch.float32)
    assert type(alone).__name__ == "Qwen3VLTextModel"
    text, has_special = chat_prompt(tokenizer, PROMPT)
    ids = tokenizer([text], add_special_tokens=not has_special, return_tensors="pt")
    with torch.no_grad():
        expected = whole.generate(
            **ids, max_new_tokens=6, do_sample=False, pad_token_id=0, eos_token_id=None
        )[0, ids["input_ids"].shape[1] :]
    ends = {tokenizer.convert_tokens_to_ids("<|im_end|>"), tokenizer.eos_token_id}
    stop = next((i for i, t in enumerate(expected.tolist()) if t in ends), len(expected))
    out = call(
        clip=_clip("qwen", tokenizer, alone), prompt=PROMPT, max_length=6, sampling_mode="off"
    )
    assert out["generated_text"]
    assert (
        out["generated_text"] == tokenizer.decode(expected[:stop], skip_special_tokens=True).strip()
    )
