"""SD3 text encoding (easel.models.sd3_text) against StableDiffusion3Pipeline's own encoders,
and ComfyUI's rules where the pipeline has none: CLIPTextEncodeSD3's empty_padding "none",
prompts longer than a CLIP window."""

from __future__ import annotations

from typing import Any

import torch

from tests.families.test_sd3_parity import split_workflow
from tests.fixtures import sd3_family

sd3_root = sd3_family.sd3_root
sd3_models = sd3_family.sd3_models
sd3_manager = sd3_family.sd3_manager
run_sd3 = sd3_family.run_sd3

EXACT = 1e-5


def encode(run_sd3: Any, **texts: str) -> dict[str, Any]:
    nodes = split_workflow()
    inputs = {"clip_l": "", "clip_g": "", "t5xxl": "", "empty_padding": "none", **texts}
    nodes["pos"] = {"type": "TextEncodeSD3", "inputs": {"clip": ["clip", "clip"], **inputs}}
    result = run_sd3({"clip": nodes["clip"], "pos": nodes["pos"]}, ["pos"])
    assert result.status == "succeeded", result.failures
    return result.values["pos"]["conditioning"]  # type: ignore[no-any-return]


def pipeline_embeds(pipe: Any, clip_l: str, clip_g: str, t5: str) -> tuple[Any, Any]:
    embeds, _, pooled, _ = pipe.encode_prompt(
        prompt=clip_l,
        prompt_2=clip_g,
        prompt_3=t5,
        device="cpu",
        do_classifier_free_guidance=False,
        max_sequence_length=77,
    )
    return embeds, pooled


def test_prompts_per_encoder_equal_pipeline_encode_prompt(sd3_models: Any, run_sd3: Any) -> None:
    cond = encode(run_sd3, clip_l="a red circle", clip_g="a blue square", t5xxl="on grass")
    embeds, pooled = pipeline_embeds(
        sd3_models["large"].pipe, "a red circle", "a blue square", "on grass"
    )
    assert cond["embeds"].shape == embeds.shape == (1, 77 + 77, sd3_family.T5_WIDTH)
    assert (cond["embeds"] - embeds).abs().max().item() <= EXACT
    assert (cond["pooled"] - pooled).abs().max().item() <= EXACT


def test_empty_padding_none_leaves_empty_prompts_out(sd3_models: Any, run_sd3: Any) -> None:
    """ComfyUI's empty_padding "none": both CLIP prompts empty means no CLIP tokens and no
    pooled embedding (the sampler gives zeros); an empty T5 prompt is its end token alone."""
    pipe = sd3_models["large"].pipe
    t5_only = encode(run_sd3, t5xxl="a red circle")
    t5 = pipe._get_t5_prompt_embeds("a red circle", max_sequence_length=77, device="cpu")
    assert t5_only["pooled"] is None
    assert (t5_only["embeds"] - t5).abs().max().item() <= EXACT
    clips_only = encode(run_sd3, clip_l="a red circle", clip_g="a red circle")
    eos = pipe.tokenizer_3.eos_token_id
    eos_alone = pipe.text_encoder_3(torch.tensor([[eos]]))[0]
    embeds, _ = pipeline_embeds(pipe, "a red circle", "a red circle", "")
    assert clips_only["embeds"].shape == (1, 77 + 1, sd3_family.T5_WIDTH)
    assert (clips_only["embeds"][:, :77] - embeds[:, :77]).abs().max().item() <= EXACT
    assert (clips_only["embeds"][:, 77:] - eos_alone).abs().max().item() <= EXACT
    # "empty_prompt" encodes it as the empty prompt (the pipeline reads an empty prompt_3 as
    # "use prompt", so its T5 encoder is asked directly)
    padded = encode(
        run_sd3, clip_l="a red circle", clip_g="a red circle", empty_padding="empty_prompt"
    )
    empty_t5 = pipe._get_t5_prompt_embeds("", max_sequence_length=77, device="cpu")
    assert padded["embeds"].shape == (1, 77 + 77, sd3_family.T5_WIDTH)
    assert (padded["embeds"][:, :77] - embeds[:, :77]).abs().max().item() <= EXACT
    assert (padded["embeds"][:, 77:] - empty_t5).abs().max().item() <= EXACT


def test_long_clip_prompt_is_encoded_in_windows_of_77(sd3_models: Any, run_sd3: Any) -> None:
    """A CLIP-G prompt of two windows: CLIP-L's one window is followed by an empty-prompt window
    (ComfyUI's rule), the first window equals the pipeline's truncated encoding."""
    long = " ".join(["red circle"] * 60)
    cond = encode(run_sd3, clip_l="a cat", clip_g=long, t5xxl="a cat")
    assert cond["embeds"].shape[1] == 2 * 77 + 77
    embeds, _ = pipeline_embeds(sd3_models["large"].pipe, "a cat", long, "a cat")
    assert (cond["embeds"][:, :77] - embeds[:, :77]).abs().max().item() <= EXACT
    empty_l, _ = pipeline_embeds(sd3_models["large"].pipe, "", "", "")
    width = sd3_family.L_WIDTH
    second_l = cond["embeds"][:, 77:154, :width]
    assert (second_l - empty_l[:, :77, :width]).abs().max().item() <= EXACT


def test_prompt_weights_move_away_from_the_empty_prompt(run_sd3: Any) -> None:
    plain = encode(run_sd3, clip_l="a red circle", clip_g="a red circle", t5xxl="a red circle")
    weighted = encode(
        run_sd3,
        clip_l="a (red:1.5) circle",
        clip_g="a (red:1.5) circle",
        t5xxl="a (red:1.5) circle",
    )
    assert plain["embeds"].shape == weighted["embeds"].shape
    t5 = slice(77, None)
    assert (plain["embeds"][:, t5] - weighted["embeds"][:, t5]).abs().max().item() > 1e-3
    assert (plain["embeds"][:, :77] - weighted["embeds"][:, :77]).abs().max().item() > 1e-3
