"""SAM 3 and SAM 3.1 (Meta's Segment Anything 3) from ComfyUI's single checkpoint file
(`checkpoints/sam3*.safetensors`, loaded by CheckpointLoader): text-prompted detection and
segmentation on transformers' Sam3Model, mask refinement on the SAM heads of transformers'
Sam3TrackerModel.

The file holds Meta's `detector.*` (ViT trunk, FPNs, CLIP text tower, DETR encoder/decoder,
segmentation head) and `tracker.*` (video tracker) tensors; easel.models.sam3_keys renames them.
SAM 3.1 ("multiplex") differs only in its FPNs (three levels, no 1/2-scale one; other FPNs for
its trackers) and its tracker; its detector runs on the same Sam3Model, with the unused fourth
FPN level given zero weights (Sam3Model always computes four levels and drops the last).
The video tracker (memory attention, multiplexing) is not loaded: only the interactive SAM
heads, which SAM3_Detect's refinement uses.

Sizes not in the tensor shapes are SAM 3's: 1008-pixel input (patch 14), attention heads of
64 channels in the ViT and CLIP, 32 in the 256-wide detector and SAM heads.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from easel.models import sam3_keys
from easel.models.errors import ModelError

IMAGE_SIZE = 1008
PATCH = 14
WINDOW = 24
TEXT_TOKENS = 32
PATCH_KEY = "vision_encoder.backbone.embeddings.patch_embeddings.projection.weight"
TOKEN_KEY = "text_encoder.text_model.embeddings.token_embedding.weight"
IMAGE_MEAN = (0.5, 0.5, 0.5)
IMAGE_STD = (0.5, 0.5, 0.5)


@dataclass(eq=False)
class Sam3Handle:
    """SAM 3's MODEL: the detector (transformers Sam3Model) and the interactive SAM heads
    (prompt encoder + mask decoder of a Sam3TrackerModel, and the FPN they read), or None
    heads for a file without a tracker."""

    name: str
    detector: Any
    heads: Any
    tracker_neck: Any
    manager: Any = field(repr=False)
    version: str = "SAM 3"
    image_size: int = 1008  # the side images (and crops) are resized to


@dataclass(frozen=True)
class NoVae:
    """The VAE output of CheckpointLoader on a SAM 3 file, which has none (ComfyUI gives None
    there): any use says so instead of failing somewhere inside a VAE node."""

    name: str

    def __getattr__(self, attribute: str) -> Any:
        # AttributeError (not ModelError) so that getattr(vae, x, default) keeps working
        if attribute.startswith("__"):
            raise AttributeError(attribute)
        raise AttributeError(
            f"{self.name} is a SAM 3 segmentation checkpoint: it has no VAE (use its MODEL "
            "with SAM3Detect and its CLIP with TextEncode)"
        )


@dataclass(frozen=True)
class Sam3TextFamily:
    """What a SAM 3 CLIP handle's `family` says: prompts go to easel.models.sam3_text."""

    name: str = "sam3"
    label: str = "SAM 3"
    text_encoding: str = "easel.models.sam3_text"


SAM3_TEXT = Sam3TextFamily()


def is_checkpoint(state: Mapping[str, Any]) -> bool:
    """Whether a checkpoint's keys are SAM 3's (easel.models.family_files.CHECKPOINTS)."""
    return all(key in state for key in sam3_keys.RECOGNISE_KEYS)


def is_folder(folder: Path) -> bool:
    return False


def folder_checkpoint(name: str, folder: Path, manager: Any) -> Any:
    raise ModelError(f"{folder.name}: SAM 3 loads from ComfyUI's single .safetensors file")


def _count(state: Mapping[str, Any], pattern: str) -> int:
    import re

    found = {int(m.group(1)) for k in state if (m := re.match(pattern, k))}
    return max(found) + 1 if found else 0


def detector_config(state: Mapping[str, Any], image_size: int = 1008) -> Any:
    """transformers Sam3Config read off the converted tensors' shapes, for `image_size` pixels
    (SAM 3's 1008; a multiple of 14 x 24, the attention window)."""
    from transformers import Sam3Config

    vit = int(state[PATCH_KEY].shape[0])
    depth = _count(state, r"vision_encoder\.backbone\.layers\.(\d+)\.")
    every = depth // 4
    global_layers = [i for i in range(depth) if every and (i + 1) % every == 0] or [depth - 1]
    positions = int(state["vision_encoder.backbone.embeddings.position_embeddings"].shape[1])
    pretrain = round(positions**0.5) * PATCH
    text = int(state[TOKEN_KEY].shape[1])
    d_model = int(state["text_projection.weight"].shape[0])
    grid = image_size // PATCH
    heads = max(1, d_model // 32)

    def ffn(key: str) -> int:
        return int(state[key].shape[0])

    return Sam3Config(
        vision_config={
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": vit,
                "intermediate_size": ffn("vision_encoder.backbone.layers.0.mlp.fc1.weight"),
                "num_hidden_layers": depth,
                "num_attention_heads": max(1, vit // 64),
                "image_size": image_size,
                "patch_size": PATCH,
                "window_size": WINDOW,
                "global_attn_indexes": global_layers,
                "pretrain_image_size": pretrain,
            },
            "fpn_hidden_size": d_model,
            "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
        },
        text_config={
            "hidden_size": text,
            "intermediate_size": ffn("text_encoder.text_model.encoder.layers.0.mlp.fc1.weight"),
            "num_hidden_layers": _count(state, r"text_encoder\.text_model\.encoder\.layers\.(\d+)"),
            "num_attention_heads": max(1, text // 64),
            "max_position_embeddings": int(
                state["text_encoder.text_model.embeddings.position_embedding.weight"].shape[0]
            ),
            "projection_dim": int(state["text_encoder.text_projection.weight"].shape[0]),
            "vocab_size": int(state[TOKEN_KEY].shape[0]),
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-5,
        },
        geometry_encoder_config={
            "hidden_size": d_model,
            "num_layers": _count(state, r"geometry_encoder\.layers\.(\d+)\."),
            "num_attention_heads": heads,
            "intermediate_size": ffn("geometry_encoder.layers.0.mlp.fc1.weight"),
        },
        detr_encoder_config={
            "hidden_size": d_model,
            "num_layers": _count(state, r"detr_encoder\.layers\.(\d+)\."),
            "num_attention_heads": heads,
            "intermediate_size": ffn("detr_encoder.layers.0.mlp.fc1.weight"),
        },
        detr_decoder_config={
            "hidden_size": d_model,
            "num_layers": _count(state, r"detr_decoder\.layers\.(\d+)\."),
            "num_queries": int(state["detr_decoder.query_embed.weight"].shape[0]),
            "num_attention_heads": heads,
            "intermediate_size": ffn("detr_decoder.layers.0.mlp.fc1.weight"),
        },
        mask_decoder_config={"hidden_size": d_model, "num_attention_heads": heads},
    )


def tracker_config(state: Mapping[str, Any], d_model: int, image_size: int = 1008) -> Any:
    """A Sam3TrackerConfig for the SAM heads. Its vision model is never run (the heads read
    the detector's ViT through `tracker_neck`), so it is the smallest one transformers builds."""
    from transformers import Sam3TrackerConfig

    grid = image_size // PATCH
    mlp = int(state["mask_decoder.transformer.layers.0.mlp.proj_in.weight"].shape[0])
    return Sam3TrackerConfig(
        vision_config={
            "model_type": "sam3_vision_model",
            "backbone_config": {
                "model_type": "sam3_vit_model",
                "hidden_size": 4,
                "intermediate_size": 4,
                "num_hidden_layers": 1,
                "num_attention_heads": 1,
                "global_attn_indexes": [0],
                "image_size": PATCH,
                "pretrain_image_size": PATCH,
                "window_size": 1,
            },
            "fpn_hidden_size": d_model,
            "backbone_feature_sizes": [[grid * 4] * 2, [grid * 2] * 2, [grid] * 2],
        },
        prompt_encoder_config={
            "hidden_size": d_model,
            "image_size": image_size,
            "patch_size": PATCH,
        },
        mask_decoder_config={
            "hidden_size": d_model,
            "mlp_dim": mlp,
            "num_attention_heads": max(1, d_model // 32),
            "iou_head_hidden_dim": int(
                state["mask_decoder.iou_prediction_head.proj_in.weight"].shape[0]
            ),
            # ComfyUI's SAM3_Detect takes the first mask token's output as it is
            "dynamic_multimask_via_stability": False,
        },
    )


def _dummy_fourth_level(detector: dict[str, Any]) -> None:
    """SAM 3.1's detector FPN has three levels; Sam3Model computes a fourth (1/2 scale) that it
    then drops, so that level gets zero weights and nothing reads its output."""
    import torch

    d_model = int(detector["text_projection.weight"].shape[0])
    vit = int(detector[PATCH_KEY].shape[0])
    head = "vision_encoder.neck.fpn_layers.3."
    detector[head + "proj1.weight"] = torch.zeros(d_model, vit, 1, 1)
    detector[head + "proj1.bias"] = torch.zeros(d_model)
    detector[head + "proj2.weight"] = torch.zeros(d_model, d_model, 3, 3)
    detector[head + "proj2.bias"] = torch.zeros(d_model)


def build(
    state: Mapping[str, Any], source: str, image_size: int = IMAGE_SIZE
) -> tuple[Any, Any, Any, str]:
    """(Sam3Model, Sam3TrackerModel or None, tracker Sam3VisionNeck or None, version) from a
    checkpoint's tensors, in eval mode, float32. `image_size` is SAM 3's 1008 for every real
    use; the tests run their tiny models on smaller images too."""
    from transformers import Sam3Model, Sam3TrackerModel
    from transformers.models.sam3.modeling_sam3 import Sam3VisionNeck

    sam31 = sam3_keys.is_sam31(state)
    detector_state, _ = sam3_keys.detector_state(state)
    if sam31:
        _dummy_fourth_level(detector_state)
    try:
        config = detector_config(detector_state, image_size)
    except KeyError as exc:
        raise ModelError(f"{source}: not a complete SAM 3 detector (no tensor for {exc})") from exc
    from accelerate import init_empty_weights

    # parameters on the meta device (no random initialisation of 0.85 B weights), then
    # assigned from the file; buffers the constructor computes stay real
    with init_empty_weights(include_buffers=False):
        detector = Sam3Model(config)
    _load(detector, detector_state, source, "detector")
    heads = neck = None
    prefixes = sam3_keys.head_prefixes(state, sam31)
    if prefixes is not None:
        head_state = sam3_keys.head_state(state, prefixes)
        d_model = config.detr_encoder_config.hidden_size
        tconfig = tracker_config(head_state, d_model, image_size)
        heads = Sam3TrackerModel(tconfig)
        missing, unexpected = heads.load_state_dict(head_state, strict=False)
        wanted = [k for k in missing if not k.startswith("vision_encoder.")]
        if wanted or unexpected:
            raise ModelError(
                f"{source}: the SAM heads do not match SAM 3's (missing {wanted[:4]}, "
                f"unexpected {unexpected[:4]})"
            )
        neck_config = config.vision_config.__class__(**config.vision_config.to_dict())
        neck_config.scale_factors = [4.0, 2.0, 1.0]
        neck = Sam3VisionNeck(neck_config)
        neck_state = sam3_keys.tracker_neck_state(state, sam31)
        result = neck.load_state_dict(neck_state, strict=False)
        if result.missing_keys or result.unexpected_keys:
            raise ModelError(
                f"{source}: the tracker's FPN does not match (missing "
                f"{result.missing_keys[:4]}, unexpected {result.unexpected_keys[:4]})"
            )
        heads.eval()
        neck.eval()
    return detector.eval(), heads, neck, "SAM 3.1" if sam31 else "SAM 3"


def _load(module: Any, state: dict[str, Any], source: str, what: str) -> None:
    import torch

    expected = module.state_dict()
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        raise ModelError(
            f"{source}: the {what} does not match SAM 3's layout (missing {missing[:4]}, "
            f"unexpected {unexpected[:4]})"
        )
    for key, value in state.items():
        if tuple(value.shape) != tuple(expected[key].shape):
            raise ModelError(
                f"{source}: {key} has shape {tuple(value.shape)}, expected "
                f"{tuple(expected[key].shape)}"
            )
    module.load_state_dict({k: v.to(torch.float32) for k, v in state.items()}, assign=True)
    for name, param in module.named_parameters():
        if param.is_meta:
            raise ModelError(f"{source}: the {what} has no value for {name}")


def single_file_checkpoint(name: str, path: Path, manager: Any) -> tuple[Sam3Handle, Any, NoVae]:
    """CheckpointLoader on a SAM 3 file: MODEL (Sam3Handle), CLIP (its text tower), no VAE.
    The modules stay float32 (SAM 3 is 0.85 B parameters); the manager places them."""
    from easel.models import tokenizers
    from easel.models.handles import ClipHandle, TextEncoderPart
    from easel.models.state_dicts import read_state_dict

    state = read_state_dict(path, allow_pickle=manager.allow_unsafe_pickle)
    if not is_checkpoint(state):
        raise ModelError(f"{path.name} is not a SAM 3 checkpoint (no detector.* tensors)")
    detector, heads, neck, version = build(state, path.name)
    del state
    key = str(path.resolve())
    manager.load_module((key, "sam3 detector"), lambda: detector)
    if heads is not None:
        manager.load_module((key, "sam3 heads"), lambda: heads)
        manager.load_module((key, "sam3 tracker neck"), lambda: neck)
    tokenizer = tokenizers.clip_tokenizer(
        "g", checkpoint=path, contents="a SAM 3 model", roots=manager.roots, max_length=TEXT_TOKENS
    )
    part = TextEncoderPart("l", tokenizer, detector.text_encoder, kind="sam3")
    clip = ClipHandle(name, (part,), manager, family=SAM3_TEXT)
    return Sam3Handle(name, detector, heads, neck, manager, version), clip, NoVae(name)
