"""Text encoding matches diffusers' encode_prompt (SD1, SD1 with clip_skip, SDXL base, SDXL
refiner) and ComfyUI's weighting and chunking rules, on tiny random CLIP text towers with the
real CLIP tokenizer files.

The builders here are shared with tests/models/test_embeddings.py and test_text_nodes.py.
"""

from __future__ import annotations

import copy
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch

from easel.models.handles import ClipHandle, TextEncoderPart
from easel.models.text import encode_prompts, encode_text

TOKENIZER_DIR = Path(__file__).resolve().parents[3] / "shared" / "tokenizers" / "clip"  # tests only
BOS, EOS = 49406, 49407
L_WIDTH, G_WIDTH, G_PROJECTION = 32, 48, 16


def tokenizer(pad: str = "<|endoftext|>") -> Any:
    """The CLIP tokenizer as SD checkpoints ship it (SDXL's second one pads with "!")."""
    from transformers import CLIPTokenizer

    if not (TOKENIZER_DIR / "vocab.json").is_file():
        pytest.fail(f"the CLIP tokenizer files are missing from {TOKENIZER_DIR}")
    return CLIPTokenizer(
        str(TOKENIZER_DIR / "vocab.json"),
        str(TOKENIZER_DIR / "merges.txt"),
        model_max_length=77,
        pad_token=pad,
    )


def text_encoder(
    width: int,
    *,
    seed: int,
    projection: int | None = None,
    layers: int = 3,
    eos_token_id: int = EOS,
    act: str = "quick_gelu",
) -> Any:
    """A tiny random CLIPTextModel (or ...WithProjection) over the full CLIP vocabulary."""
    from transformers import CLIPTextConfig, CLIPTextModel, CLIPTextModelWithProjection

    config = CLIPTextConfig(
        vocab_size=49408,
        hidden_size=width,
        intermediate_size=2 * width,
        num_attention_heads=2,
        num_hidden_layers=layers,
        max_position_embeddings=77,
        bos_token_id=BOS,
        eos_token_id=eos_token_id,
        pad_token_id=1,
        hidden_act=act,
        projection_dim=projection or width,
    )
    torch.manual_seed(seed)
    cls = CLIPTextModelWithProjection if projection else CLIPTextModel
    return cls(config).eval()


def manager(root: Path) -> Any:
    from easel.models.manager import ModelManager

    return ModelManager(roots=[root], device="cpu")


def sd1_clip(root: Path, **kwargs: Any) -> tuple[ClipHandle, Any]:
    """An SD1-style handle (one CLIP-L part, last layer) and a diffusers pipeline on copies of
    the same weights."""
    from diffusers import StableDiffusionPipeline

    tok, model = tokenizer(), text_encoder(L_WIDTH, seed=1, **kwargs)
    clip = ClipHandle("sd1", (TextEncoderPart("", tok, model),), manager(root))
    pipe = StableDiffusionPipeline(
        vae=None,
        unet=None,
        scheduler=_scheduler(),
        text_encoder=copy.deepcopy(model),
        tokenizer=tokenizer(),
        safety_checker=None,
        feature_extractor=None,
        requires_safety_checker=False,
    )
    return clip, pipe


def sdxl_clip(root: Path, *, refiner: bool = False, g_eos: int = EOS) -> tuple[ClipHandle, Any]:
    """SDXL base (parts l, g) or refiner (g only) handle, as the family registry configures
    them (layer -2, no final norm, pooled from g), and the matching diffusers pipeline."""
    from diffusers import StableDiffusionXLImg2ImgPipeline, StableDiffusionXLPipeline

    te_l = text_encoder(L_WIDTH, seed=1)
    te_g = text_encoder(G_WIDTH, seed=2, projection=G_PROJECTION, eos_token_id=g_eos, act="gelu")
    part_g = TextEncoderPart("g", tokenizer("!"), te_g, layer=-2, layer_norm=False, pooled=True)
    part_l = TextEncoderPart("l", tokenizer(), te_l, layer=-2, layer_norm=False)
    parts = (part_g,) if refiner else (part_l, part_g)
    clip = ClipHandle("sdxl-refiner" if refiner else "sdxl", parts, manager(root))
    if refiner:
        pipe = StableDiffusionXLImg2ImgPipeline(
            vae=None,
            unet=None,
            scheduler=_scheduler(),
            text_encoder=None,
            tokenizer=None,
            text_encoder_2=copy.deepcopy(te_g),
            tokenizer_2=tokenizer("!"),
            requires_aesthetics_score=True,
        )
    else:
        pipe = StableDiffusionXLPipeline(
            vae=None,
            unet=None,
            scheduler=_scheduler(),
            text_encoder=copy.deepcopy(te_l),
            tokenizer=tokenizer(),
            text_encoder_2=copy.deepcopy(te_g),
            tokenizer_2=tokenizer("!"),
        )
    return clip, pipe


def _scheduler() -> Any:
    from diffusers import EulerDiscreteScheduler

    return EulerDiscreteScheduler(steps_offset=1)


def sd1_reference(pipe: Any, prompt: str, clip_skip: int | None = None) -> Any:
    """diffusers' StableDiffusionPipeline.encode_prompt."""
    if clip_skip is not None and not hasattr(pipe.text_encoder, "text_model"):
        # diffusers 0.42 reads `text_encoder.text_model.final_layer_norm`, which
        # transformers 5 removed from CLIPTextModel (the model is its own text model now).
        pipe.text_encoder.__dict__["text_model"] = SimpleNamespace(
            final_layer_norm=pipe.text_encoder.final_layer_norm
        )
    with torch.no_grad():
        embeds, _ = pipe.encode_prompt(prompt, "cpu", 1, False, clip_skip=clip_skip)
    return embeds


def sdxl_reference(pipe: Any, prompt: str, clip_skip: int | None = None) -> tuple[Any, Any]:
    """diffusers' SDXL encode_prompt: (prompt_embeds, pooled_prompt_embeds)."""
    with torch.no_grad():
        out = pipe.encode_prompt(
            prompt,
            device="cpu",
            num_images_per_prompt=1,
            do_classifier_free_guidance=False,
            clip_skip=clip_skip,
        )
    return out[0], out[2]


PROMPTS = ["a red circle on a blue background", "", "a photo of an astronaut riding a horse"]


# -- parity with diffusers, plain prompts: bit-identical ----------------------------------------
@pytest.mark.parametrize("prompt", PROMPTS)
def test_sd1_plain_prompt_is_bit_identical_to_diffusers(tmp_path: Path, prompt: str) -> None:
    clip, pipe = sd1_clip(tmp_path)
    encoded = encode_text(clip, prompt)
    reference = sd1_reference(pipe, prompt)
    assert encoded.conditioning["embeds"].shape == (1, 77, L_WIDTH)
    assert torch.equal(encoded.conditioning["embeds"], reference)
    assert encoded.warnings == []


@pytest.mark.parametrize(("layer", "clip_skip"), [(-2, 1), (-3, 2)])
def test_sd1_clip_skip_matches_diffusers(tmp_path: Path, layer: int, clip_skip: int) -> None:
    clip, pipe = sd1_clip(tmp_path)
    skipped = clip.with_layer(layer)
    ours = encode_text(skipped, PROMPTS[0]).conditioning["embeds"]
    assert torch.equal(ours, sd1_reference(pipe, PROMPTS[0], clip_skip=clip_skip))
    assert not torch.equal(ours, encode_text(clip, PROMPTS[0]).conditioning["embeds"])


def test_a_layer_deeper_than_the_encoder_uses_the_last_one_as_comfyui(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)  # 3 layers
    ours = encode_text(clip.with_layer(-12), PROMPTS[0]).conditioning["embeds"]
    assert torch.equal(ours, sd1_reference(pipe, PROMPTS[0]))


@pytest.mark.parametrize("prompt", PROMPTS)
def test_sdxl_base_matches_diffusers_with_both_tokenizers(tmp_path: Path, prompt: str) -> None:
    clip, pipe = sdxl_clip(tmp_path)
    assert clip.parts[1].tokenizer.pad_token_id == 0  # "!": SDXL's second tokenizer
    encoded = encode_text(clip, prompt).conditioning
    embeds, pooled = sdxl_reference(pipe, prompt)
    assert encoded["embeds"].shape == (1, 77, L_WIDTH + G_WIDTH)
    assert torch.equal(encoded["embeds"], embeds)
    assert encoded["pooled"].shape == (1, G_PROJECTION)
    assert torch.equal(encoded["pooled"], pooled)


def test_sdxl_base_with_legacy_eos_config_matches_diffusers(tmp_path: Path) -> None:
    """Real SDXL text_encoder_2 configs say eos_token_id=2: pooling by argmax of the ids."""
    clip, pipe = sdxl_clip(tmp_path, g_eos=2)
    encoded = encode_text(clip, PROMPTS[0]).conditioning
    embeds, pooled = sdxl_reference(pipe, PROMPTS[0])
    assert torch.equal(encoded["embeds"], embeds) and torch.equal(encoded["pooled"], pooled)


def test_sdxl_clip_skip_matches_diffusers(tmp_path: Path) -> None:
    clip, pipe = sdxl_clip(tmp_path)
    encoded = encode_text(clip.with_layer(-3), PROMPTS[0]).conditioning
    embeds, pooled = sdxl_reference(pipe, PROMPTS[0], clip_skip=1)
    assert torch.equal(encoded["embeds"], embeds) and torch.equal(encoded["pooled"], pooled)


@pytest.mark.parametrize("prompt", PROMPTS)
def test_sdxl_refiner_matches_diffusers_img2img_pipeline(tmp_path: Path, prompt: str) -> None:
    clip, pipe = sdxl_clip(tmp_path, refiner=True)
    encoded = encode_text(clip, prompt).conditioning
    embeds, pooled = sdxl_reference(pipe, prompt)
    assert encoded["embeds"].shape == (1, 77, G_WIDTH)
    assert torch.equal(encoded["embeds"], embeds) and torch.equal(encoded["pooled"], pooled)


def test_single_part_handles_keep_working_for_clip_users(tmp_path: Path) -> None:
    clip, _ = sd1_clip(tmp_path)
    assert clip.tokenizer is clip.parts[0].tokenizer
    assert clip.text_model is clip.parts[0].model and clip.text_projection is None


# -- chunking --------------------------------------------------------------------------------
def test_long_prompt_is_encoded_in_75_token_chunks(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)
    prompt = "cat " * 100  # one token per word
    encoded = encode_text(clip, prompt)
    embeds = encoded.conditioning["embeds"]
    assert embeds.shape == (1, 154, L_WIDTH)
    # diffusers truncates to the first 75 tokens: that is our first chunk
    assert torch.equal(embeds[:, :77], sd1_reference(pipe, prompt))
    assert torch.equal(embeds[:, 77:], sd1_reference(pipe, "cat " * 25))
    mask = encoded.conditioning["attention_mask"]
    assert mask.shape == (1, 154) and mask[0, :77].sum() == 77 and mask[0, 77:].sum() == 27
    assert encoded.warnings == [
        "the prompt has 100 tokens, more than the text encoder's 75: "
        "encoded in 2 windows of 75 and concatenated"
    ]


def test_sdxl_chunks_both_parts_alike_and_pools_from_the_first(tmp_path: Path) -> None:
    clip, pipe = sdxl_clip(tmp_path)
    prompt = "cat " * 80
    encoded = encode_text(clip, prompt).conditioning
    assert encoded["embeds"].shape == (1, 154, L_WIDTH + G_WIDTH)
    embeds, pooled = sdxl_reference(pipe, prompt)
    assert torch.equal(encoded["embeds"][:, :77], embeds)
    assert torch.equal(encoded["pooled"], pooled)


def test_a_short_piece_that_does_not_fit_starts_the_next_chunk(tmp_path: Path) -> None:
    """ComfyUI keeps a weighted piece of fewer than 8 tokens whole."""
    clip, _ = sd1_clip(tmp_path)
    encoded = encode_text(clip, "cat " * 70 + "(red green blue pink black gold:1.2)")
    mask = encoded.conditioning["attention_mask"][0]
    assert mask.shape == (154,)
    assert int(mask[:77].sum()) == 72 and int(mask[77:].sum()) == 8


# -- weights (ComfyUI's interpolation towards the empty prompt) ----------------------------------
def _hidden(model: Any, ids: list[int], layer: int = -1, norm: bool = True) -> Any:
    with torch.no_grad():
        out = model(torch.tensor([ids]), output_hidden_states=True)
    if layer == -1 and norm:
        return out.last_hidden_state[0]
    hidden = out.hidden_states[layer][0]
    return model.final_layer_norm(hidden) if norm else hidden


def _row(tok: Any, text: str) -> list[int]:
    return tok(text, padding="max_length", max_length=77, truncation=True).input_ids


def test_weights_move_tokens_away_from_the_empty_prompt(tmp_path: Path) -> None:
    clip, _ = sd1_clip(tmp_path)
    tok, model = clip.parts[0].tokenizer, clip.parts[0].model
    ours = encode_text(clip, "a (red:1.5) ((circle))").conditioning["embeds"][0]
    z = _hidden(model, _row(tok, "a red circle"))
    z_empty = _hidden(model, _row(tok, ""))
    expected = z.clone()
    expected[2] = z_empty[2] + (z[2] - z_empty[2]) * 1.5  # BOS, a, red, circle
    expected[3] = z_empty[3] + (z[3] - z_empty[3]) * (1.1 * 1.1)
    torch.testing.assert_close(ours, expected, rtol=0, atol=1e-6)
    assert torch.equal(ours[:2], z[:2]) and torch.equal(ours[4:], z[4:])


def test_weight_one_and_escapes_change_nothing_but_the_text(tmp_path: Path) -> None:
    clip, pipe = sd1_clip(tmp_path)
    assert torch.equal(
        encode_text(clip, "a (red:1.0) circle").conditioning["embeds"],
        sd1_reference(pipe, "a red circle"),
    )
    escaped = encode_text(clip, r"a \(red\) [circle]").conditioning["embeds"]
    assert torch.equal(escaped, sd1_reference(pipe, "a (red) [circle]"))


def test_sdxl_weights_use_each_parts_own_empty_prompt(tmp_path: Path) -> None:
    clip, _ = sdxl_clip(tmp_path)
    ours = encode_text(clip, "a (red:0.5) circle").conditioning["embeds"][0]
    for part, columns in (
        (clip.parts[0], slice(0, L_WIDTH)),
        (clip.parts[1], slice(L_WIDTH, None)),
    ):
        z = _hidden(part.model, _row(part.tokenizer, "a red circle"), -2, norm=False)
        z_empty = _hidden(part.model, _row(part.tokenizer, ""), -2, norm=False)
        expected = z.clone()
        expected[2] = z_empty[2] + (z[2] - z_empty[2]) * 0.5
        torch.testing.assert_close(ours[:, columns], expected, rtol=0, atol=1e-6)


def test_per_part_texts_pad_the_shorter_part_with_empty_chunks(tmp_path: Path) -> None:
    clip, _ = sdxl_clip(tmp_path)
    encoded = encode_prompts(clip, {"l": "a red circle", "g": "cat " * 80}).conditioning
    assert encoded["embeds"].shape == (1, 154, L_WIDTH + G_WIDTH)
    l_part = encoded["embeds"][0, :, :L_WIDTH]
    only_l = encode_text(ClipHandle("l", (clip.parts[0],), clip.manager), "a red circle")
    empty_l = encode_text(ClipHandle("l", (clip.parts[0],), clip.manager), "")
    assert torch.equal(l_part[:77], only_l.conditioning["embeds"][0])
    assert torch.equal(l_part[77:], empty_l.conditioning["embeds"][0])


# -- LoRA patches reach the text towers ----------------------------------------------------------
def test_text_encoder_lora_patches_are_applied(tmp_path: Path) -> None:
    """A kohya LoRA on CLIP-L, bound through ClipHandle.forward, equals the weights merged by
    hand (W + up @ down * alpha / rank), including with weights in the prompt."""
    from safetensors.torch import save_file

    from easel.models.lora import load_lora

    clip, _ = sd1_clip(tmp_path)
    model = clip.parts[0].model
    rank, alpha, strength = 2, 1.0, 0.8
    generator = torch.Generator().manual_seed(3)
    targets = ["encoder.layers.0.self_attn.q_proj", "encoder.layers.1.mlp.fc1"]
    state, merged = {}, copy.deepcopy(model)
    for name in targets:
        linear = model.get_submodule(name)
        down = torch.randn(rank, linear.in_features, generator=generator)
        up = torch.randn(linear.out_features, rank, generator=generator)
        key = "lora_te_text_model_" + name.replace(".", "_")
        state |= {
            f"{key}.lora_down.weight": down,
            f"{key}.lora_up.weight": up,
            f"{key}.alpha": torch.tensor(alpha),
        }
        with torch.no_grad():
            merged.get_submodule(name).weight += strength * (up @ down) * alpha / rank
    save_file(state, str(tmp_path / "te.safetensors"))
    patched = clip.with_patches(((load_lora(tmp_path / "te.safetensors"), strength),))
    by_hand = ClipHandle("merged", (TextEncoderPart("", clip.tokenizer, merged),), clip.manager)
    for prompt in ("a red circle", "a (red:1.3) circle"):
        ours = encode_text(patched, prompt).conditioning["embeds"]
        expected = encode_text(by_hand, prompt).conditioning["embeds"]
        torch.testing.assert_close(ours, expected, rtol=0, atol=1e-5)
        assert not torch.allclose(ours, encode_text(clip, prompt).conditioning["embeds"])
