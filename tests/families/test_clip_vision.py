"""CLIP vision files (ComfyUI's `clip_vision/` layouts) load as the transformers towers they
hold, encode as those towers do on transformers' own preprocessing, and the nodes that use them
refuse what they cannot do with the node's input named."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
import torch

from easel.core.node import NodeError
from easel.models.errors import ModelError
from tests.fixtures import clip_vision_files as files


@pytest.fixture(scope="module")
def towers(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from easel.models.manager import ModelManager

    root = tmp_path_factory.mktemp("clip-vision")
    siglip, clip = files.siglip(), files.clip_vision(projection=24)
    files.write(root, "clip_vision", "siglip.safetensors", files.vision_file(siglip))
    files.write(root, "clip_vision", "clip-g.safetensors", files.vision_file(clip))
    manager = ModelManager([root], device="cpu", dtype=torch.float32)
    return SimpleNamespace(root=root, siglip=siglip, clip=clip, manager=manager)


def as_image(picture: Any) -> Any:
    return torch.from_numpy(np.asarray(picture).copy()).permute(2, 0, 1)[None].float() / 255


def test_files_load_as_the_towers_they_hold_and_encode_alike(towers: Any) -> None:
    from transformers import CLIPImageProcessor

    from easel.models import clip_vision

    [picture] = files.random_images(1)
    image = as_image(picture)

    siglip = clip_vision.load(towers.manager, "siglip.safetensors")
    assert (siglip.kind, siglip.image_size, siglip.mean) == ("siglip", files.IMAGE, (0.5,) * 3)
    assert siglip.model.config.vision_use_head  # the released file's pooling head is read too
    ours = clip_vision.encode(siglip, image)
    with torch.no_grad():
        pixels = files.siglip_processor()(images=picture, return_tensors="pt")["pixel_values"]
        theirs = towers.siglip(pixel_values=pixels, output_hidden_states=True)
    assert ours.image_embeds is None
    assert (ours.last_hidden_state - theirs.last_hidden_state).abs().max().item() < 1e-5
    assert (ours.penultimate_hidden_states - theirs.hidden_states[-2]).abs().max() < 1e-5

    clip = clip_vision.load(towers.manager, "clip-g.safetensors")
    assert clip.kind == "clip" and clip.model.config.projection_dim == 24
    assert clip_vision.load(towers.manager, "clip-g.safetensors") is clip  # loaded once
    ours = clip_vision.encode(clip, image)
    processor = CLIPImageProcessor(
        size={"shortest_edge": files.IMAGE},
        crop_size={"height": files.IMAGE, "width": files.IMAGE},
    )
    with torch.no_grad():
        theirs = towers.clip(**processor(images=picture, return_tensors="pt"))
    assert ours.image_embeds.shape == (1, 24)
    assert (ours.image_embeds - theirs.image_embeds).abs().max().item() < 1e-5


def test_center_keeps_the_middle_and_none_squeezes() -> None:
    from easel.models.clip_vision import CLIP_MEAN, CLIP_STD, preprocess

    torch.manual_seed(0)
    tall = (torch.rand(1, 3, 48, 32) * 255).round() / 255
    center = preprocess(tall, 32, CLIP_MEAN, CLIP_STD, crop=True)
    middle = preprocess(tall[:, :, 8:40], 32, CLIP_MEAN, CLIP_STD, crop=True)
    assert center.shape == (1, 3, 32, 32)
    assert (center - middle).abs().max().item() < 1e-5  # shorter side already 32: a cut only
    squeezed = preprocess(tall, 32, CLIP_MEAN, CLIP_STD, crop=False)
    assert squeezed.shape == (1, 3, 32, 32)
    assert (squeezed - center).abs().max().item() > 0.1


def test_openclip_layout_and_t2i_style_models_are_refused_with_the_reason() -> None:
    from easel.models import clip_vision, redux

    openclip = {"visual.transformer.resblocks.0.attn.in_proj_weight": torch.zeros(3, 1)}
    with pytest.raises(ModelError, match="OpenCLIP's layout"):
        clip_vision.build(openclip, torch.float32, "clip_vision/open.safetensors")
    with pytest.raises(ModelError, match="T2I-Adapter style model"):
        redux.build({"style_embedding": torch.zeros(1, 8, 4)}, torch.float32, "style_models/t2i")


def test_nodes_name_the_input_they_cannot_use(towers: Any) -> None:
    from easel.models import clip_vision, redux
    from easel.nodes.clip_vision import unCLIPConditioning
    from easel.nodes.style_model import StyleModelApply

    [picture] = files.random_images(1)
    siglip_out = clip_vision.encode(
        clip_vision.load(towers.manager, "siglip.safetensors"), as_image(picture)
    )
    prompt = {"embeds": torch.zeros(1, 4, 16), "pooled": torch.zeros(1, 8)}
    with pytest.raises(NodeError, match="no projected image embedding") as caught:
        unCLIPConditioning.fn(
            conditioning=prompt, clip_vision_output=siglip_out, strength=1.0, noise_augmentation=0.0
        )
    assert caught.value.input == "clip_vision_output"

    model = redux.build(dict(files.redux(text_width=24).state_dict()), torch.float32, "redux")
    style = redux.StyleModelHandle("redux.safetensors", Path("redux.safetensors"), model)
    with pytest.raises(NodeError, match="attn_bias") as caught:
        StyleModelApply.fn(
            conditioning=prompt,
            style_model=style,
            clip_vision_output=siglip_out,
            strength=0.5,
            strength_type="attn_bias",
        )
    assert caught.value.input == "strength_type"
    with pytest.raises(NodeError, match="width 24 but the prompt's are 16") as caught:
        StyleModelApply.fn(
            conditioning=prompt,
            style_model=style,
            clip_vision_output=siglip_out,
            strength=1.0,
            strength_type="multiply",
        )
    assert caught.value.input == "conditioning"
    # multiply at strength 2: the image's 16 tokens, doubled, after the prompt's 4
    wide = {"embeds": torch.zeros(1, 4, 24), "pooled": torch.zeros(1, 8)}
    out = StyleModelApply.fn(
        conditioning=wide,
        style_model=style,
        clip_vision_output=siglip_out,
        strength=2.0,
        strength_type="multiply",
    )["conditioning"]
    tokens = redux.image_tokens(style, siglip_out.last_hidden_state)
    assert out["embeds"].shape == (1, 4 + 16, 24)
    assert torch.equal(out["embeds"][:, 4:], 2.0 * tokens)


def test_unclip_conditioning_on_a_model_without_pooled_input_is_refused() -> None:
    from easel.models.conditioning import unet_condition

    unet = SimpleNamespace(
        config=SimpleNamespace(
            addition_embed_type=None, encoder_hid_dim_type=None, cross_attention_dim=16
        )
    )
    cond = {
        "embeds": torch.zeros(1, 4, 16),
        "unclip": [{"image_embeds": torch.zeros(1, 8), "strength": 1.0, "noise_augmentation": 0.0}],
    }
    with pytest.raises(ValueError, match="conditions SDXL models"):
        unet_condition(unet, cond, 1, torch.device("cpu"), torch.float32)


def released(width: int, layers: int, mlp: int, patch: int, positions: int, **extra: Any) -> Any:
    """Shape-only (meta) tensors of a released tower's file."""
    prefix = "vision_model."
    state = {
        prefix + "embeddings.patch_embedding.weight": (width, 3, patch, patch),
        prefix + "embeddings.position_embedding.weight": (positions, width),
        prefix + "encoder.layers.0.mlp.fc1.weight": (mlp, width),
        prefix + f"encoder.layers.{layers - 1}.mlp.fc1.weight": (mlp, width),
        **extra,
    }
    return {key: torch.empty(shape, device="meta") for key, shape in state.items()}


@pytest.mark.parametrize(
    "state,expected",
    [
        (  # sigclip_vision_patch14_384 (Redux)
            released(1152, 27, 4304, 14, 729, **{"vision_model.head.probe": (1, 1, 1152)}),
            ("siglip", 384, 16, "gelu_pytorch_tanh", None),
        ),
        (  # clip_vision_g (OpenCLIP ViT-bigG-14, revision)
            released(
                1664,
                48,
                8192,
                14,
                257,
                **{
                    "vision_model.embeddings.class_embedding": (1664,),
                    "visual_projection.weight": (1280, 1664),
                },
            ),
            ("clip", 224, 16, "gelu", 1280),
        ),
        (  # OpenAI's ViT-L/14
            released(
                1024,
                24,
                4096,
                14,
                257,
                **{
                    "vision_model.embeddings.class_embedding": (1024,),
                    "visual_projection.weight": (768, 1024),
                },
            ),
            ("clip", 224, 16, "quick_gelu", 768),
        ),
    ],
)
def test_released_shapes_give_the_released_configs(state: Any, expected: Any) -> None:
    from easel.models.clip_vision import config_for

    kind, config = config_for(state)
    projection = getattr(config, "projection_dim", None) if kind == "clip" else None
    found = (kind, config.image_size, config.num_attention_heads, config.hidden_act, projection)
    assert found == expected
