"""SAM 3 / SAM 3.1 from ComfyUI's checkpoint file against transformers' models run directly.

The reference restates ComfyUI's SAM3_Detect on transformers' own models built from the
fixture's modules: Sam3Model's forward (text by the CLIP tokenizer, a padding box so that the
geometry encoder's CLS token joins the prompt as in Meta's SAM 3) and a Sam3TrackerModel with a
vision encoder of its own (the detector's ViT with the tracker's FPN), whose forward projects
the high-resolution levels and adds the no-memory embedding itself. Easel's side loads the
file in ComfyUI's layout and runs easel.models.sam3_detect, whose SAM-head glue shares the ViT.

The default run compares on 336-pixel images (one attention window), the slow run on 672 (2 x 2
windows) and on a SAM 3.1 file too; the template test runs SAM 3's real 1008 end to end."""

from __future__ import annotations

import importlib.util
import os
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from tests.fixtures import sam3_files
from tests.fixtures.sd_family import SHARED_CLIP, write_comfy_tokenizer

SIZE = 336
WINDOWED = 672
TOLERANCE = 1e-4
PROMPT = "guitar"


@pytest.fixture(scope="module")
def sam3_built(tmp_path_factory: pytest.TempPathFactory) -> sam3_files.TinySam3:
    return sam3_files.build(tmp_path_factory.mktemp("sam3"))


@pytest.fixture(scope="module")
def sam31_built(tmp_path_factory: pytest.TempPathFactory) -> sam3_files.TinySam3:
    return sam3_files.build(tmp_path_factory.mktemp("sam31"), "sam31_tiny.safetensors", sam31=True)


def _tokens(text: str) -> tuple[Any, Any]:
    from transformers import CLIPTokenizer

    tokenizer = CLIPTokenizer.from_pretrained(str(SHARED_CLIP), pad_token="!")
    out = tokenizer(text, padding="max_length", max_length=32, return_tensors="pt")
    return out.input_ids, out.attention_mask


def _pixels(image: Any, size: int) -> Any:
    return (F.interpolate(image[:, :3], size=(size, size), mode="bilinear") - 0.5) / 0.5


def reference_models(built: sam3_files.TinySam3, size: int) -> tuple[Any, Any]:
    """transformers' Sam3Model and a complete Sam3TrackerModel (its own ViT and FPN)."""
    from transformers import Sam3Model, Sam3TrackerConfig, Sam3TrackerModel

    config = sam3_files.detector_config(size)
    detector = Sam3Model(config).eval()
    detector.load_state_dict(built.detector.state_dict())
    vision = config.vision_config.to_dict()
    vision["scale_factors"] = [4.0, 2.0, 1.0]
    heads_config = built.heads.config
    prompt = heads_config.prompt_encoder_config.to_dict()
    prompt["image_size"] = size
    tracker = Sam3TrackerModel(
        Sam3TrackerConfig(
            vision_config=vision,
            prompt_encoder_config=prompt,
            mask_decoder_config=heads_config.mask_decoder_config.to_dict(),
        )
    ).eval()
    heads = built.heads.state_dict()
    state = {k: v for k, v in heads.items() if not k.startswith("vision_encoder.")}
    backbone = detector.vision_encoder.backbone.state_dict()
    state.update({f"vision_encoder.backbone.{k}": v for k, v in backbone.items()})
    state.update({f"vision_encoder.neck.{k}": v for k, v in built.neck_state.items()})
    tracker.load_state_dict(state)
    return detector, tracker


def reference(
    built: sam3_files.TinySam3,
    image: Any,
    threshold: float,
    iterations: int,
    max_detections: int,
    size: int,
    geometry: Any = None,
) -> tuple[Any, list[dict[str, float]]]:
    """(union mask [H, W], boxes) for PROMPT on `image`, at `size` pixels; `geometry` [N, 4]
    (normalised cx, cy, w, h) are positive box prompts beside the text."""
    detector, tracker = reference_models(built, size)
    _, _, height, width = image.shape
    ids, attention = _tokens(PROMPT)
    if geometry is None:
        boxes, labels = torch.zeros(1, 1, 4), torch.full((1, 1), -10)
    else:
        boxes, labels = geometry[None], torch.ones(1, len(geometry), dtype=torch.long)
    with torch.no_grad():
        out = detector(
            pixel_values=_pixels(image, size),
            input_ids=ids,
            attention_mask=attention,
            input_boxes=boxes,
            input_boxes_labels=labels,
        )
    probs = out.pred_logits[0].sigmoid()
    keep = probs > threshold
    boxes_px = out.pred_boxes[0][keep] * torch.tensor([width, height, width, height])
    kept = probs[keep]
    masks = F.interpolate(out.pred_masks, size=(height, width), mode="bilinear")[0][keep]
    order = kept.argsort(descending=True)[:max_detections]
    boxes, objects = [], []
    for index in order.tolist():
        x1, y1, x2, y2 = boxes_px[index].tolist()
        score = float(kept[index])
        boxes.append({"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1, "score": score})
        coarse = masks[index]
        bw, bh = x2 - x1, y2 - y1
        cx1, cy1 = max(0, int(x1 - bw * 0.1)), max(0, int(y1 - bh * 0.1))
        cx2, cy2 = min(width, int(x2 + bw * 0.1)), min(height, int(y2 + bh * 0.1))
        crop = _pixels(image[:, :, cy1:cy2, cx1:cx2], size)
        logits = coarse[cy1:cy2, cx1:cx2][None, None]
        for _ in range(iterations):
            prompt = F.interpolate(logits, size=(size, size), mode="bilinear")
            with torch.no_grad():
                result = tracker(pixel_values=crop, input_masks=prompt, multimask_output=False)
            low = result.pred_masks[:, 0]
            present = result.object_score_logits[:, 0] > 0
            low = torch.where(present[:, :, None, None], low, torch.full_like(low, -1024.0))
            logits = F.interpolate(low, size=(size, size), mode="bilinear")
        full = torch.zeros(1, height, width)
        refined = F.interpolate(logits, size=(cy2 - cy1, cx2 - cx1), mode="bilinear")
        full[:, cy1:cy2, cx1:cx2] = refined[0]
        objects.append(((full > 0) | (coarse[None] > 0)).float())
    union = torch.cat(objects).amax(0) if objects else torch.zeros(height, width)
    return union, boxes


def easel_handle(built: sam3_files.TinySam3, size: int) -> Any:
    from safetensors.torch import load_file

    from easel.models import sam3

    detector, heads, neck, version = sam3.build(load_file(str(built.path)), built.path.name, size)
    return sam3.Sam3Handle(built.path.name, detector, heads, neck, None, version, size)


def easel_prompts(built: sam3_files.TinySam3, text: str) -> Any:
    """sam3_text's prompts, from the handle's CLIP tower and the CLIP tokenizer ("!" pads)."""
    from transformers import CLIPTokenizer

    from easel.models import sam3, sam3_text
    from easel.models.handles import ClipHandle, TextEncoderPart

    tokenizer = CLIPTokenizer.from_pretrained(str(SHARED_CLIP), pad_token="!")
    part = TextEncoderPart("l", tokenizer, built.detector.text_encoder, kind="sam3")
    clip = ClipHandle("tiny", (part,), None, family=sam3.SAM3_TEXT)
    return sam3_text.encode_prompts(clip, {"l": text}).conditioning["sam3_prompts"]


def check_detection(built: sam3_files.TinySam3, size: int, iterations: int) -> None:
    from easel.models import sam3_detect

    generator = torch.Generator().manual_seed(1)
    image = torch.rand(1, 3, 40, 56, generator=generator)
    theirs, their_boxes = reference(built, image, 0.0, iterations, 2, size)
    handle = easel_handle(built, size)
    prompts = easel_prompts(built, f"{PROMPT}:2")
    masks, boxes = sam3_detect.detect(
        handle, image, prompts, threshold=0.0, refine_iterations=iterations
    )
    assert masks.shape == (1, 40, 56)
    assert len(boxes[0]) == len(their_boxes) == 2
    for ours, ref in zip(boxes[0], their_boxes, strict=True):
        assert max(abs(ours[k] - ref[k]) for k in ours) <= TOLERANCE
    assert 0 < float(theirs.mean()) < 1  # something found, not everything
    assert torch.equal(masks[0], theirs)


def test_detection_and_refinement_equal_transformers_models_run_directly(
    sam3_built: sam3_files.TinySam3,
) -> None:
    check_detection(sam3_built, SIZE, 1)


@pytest.mark.slow
def test_detection_with_attention_windows_and_on_a_sam31_file(
    sam3_built: sam3_files.TinySam3, sam31_built: sam3_files.TinySam3
) -> None:
    """Two refinement passes (the second takes the first's logits), 2 x 2 attention windows."""
    check_detection(sam3_built, WINDOWED, 2)
    check_detection(sam31_built, SIZE, 2)


def reference_prompted(
    built: sam3_files.TinySam3, image: Any, iterations: int, **prompt: Any
) -> Any:
    """[H, W] mask of a point or box prompt by Sam3TrackerModel's own forward (ComfyUI's
    point and box paths: best of three masks for one point, then mask-prompt passes)."""
    import torch.nn.functional as F

    _, tracker = reference_models(built, SIZE)
    _, _, height, width = image.shape
    pixels = _pixels(image, SIZE)
    kwargs: dict[str, Any] = {}
    if "points" in prompt:
        kwargs = {"input_points": prompt["points"][None, None],
                  "input_labels": prompt["labels"][None, None]}
    else:  # SAM 3's tracker: a "not a point" token beside the box
        kwargs = {"input_points": torch.zeros(1, 1, 1, 2),
                  "input_labels": -torch.ones(1, 1, 1, dtype=torch.long),
                  "input_boxes": prompt["box"].reshape(1, 1, 4)}
    multimask = "points" in prompt and len(prompt["points"]) == 1
    logits = None
    for _ in range(max(1, iterations)):
        with torch.no_grad():
            if logits is None:
                out = tracker(pixel_values=pixels, multimask_output=multimask, **kwargs)
            else:
                out = tracker(pixel_values=pixels, input_masks=logits, multimask_output=False)
        low = out.pred_masks[:, 0]
        if logits is None and multimask:
            best = int(out.iou_scores[0, 0].argmax())
            low = low[:, best : best + 1]
        present = out.object_score_logits[:, 0] > 0
        low = torch.where(present[:, :, None, None], low, torch.full_like(low, -1024.0))
        logits = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear")
    return (F.interpolate(logits, size=(height, width), mode="bilinear")[0, 0] > 0).float()


@pytest.mark.slow
def test_an_absent_object_gives_no_object_logits_everywhere(
    sam3_built: sam3_files.TinySam3,
) -> None:
    """SAM 3's tracker sets every logit to -1024 when the object score is not above 0."""
    from easel.models import sam3_detect

    handle = easel_handle(sam3_built, SIZE)
    with torch.no_grad():
        handle.heads.mask_decoder.pred_obj_score_head.proj_out.bias.fill_(-100.0)
    image = torch.rand(1, 3, 30, 20, generator=torch.Generator().manual_seed(8))
    features = sam3_detect.tracker_features(handle, sam3_detect.preprocess(image, SIZE))
    prompt = torch.randn(1, 1, SIZE, SIZE, generator=torch.Generator().manual_seed(9))
    logits = sam3_detect.segment(handle, features, mask_logits=prompt)
    assert torch.equal(logits, torch.full_like(logits, -1024.0))


@pytest.mark.slow
def test_point_and_box_logits_equal_the_tracker_models_forward(
    sam3_built: sam3_files.TinySam3,
) -> None:
    """SAM's logits for two points, one point (best of three) and a box (beside SAM 3's "not a
    point" token) on the whole image, against Sam3TrackerModel's forward."""
    import torch.nn.functional as F

    from easel.models import sam3_detect

    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(7))
    handle = easel_handle(sam3_built, SIZE)
    _, tracker = reference_models(sam3_built, SIZE)
    pixels = _pixels(image, SIZE)
    features = sam3_detect.tracker_features(handle, pixels)
    prompts = [
        {"points": torch.tensor([[120.0, 60.0], [250.0, 200.0]]), "labels": torch.tensor([1, 0])},
        {"points": torch.tensor([[180.0, 160.0]]), "labels": torch.tensor([1])},
        {"box": torch.tensor([40.0, 50.0, 220.0, 260.0])},
    ]
    for prompt in prompts:
        ours = sam3_detect.segment(handle, features, **prompt)
        multimask = "points" in prompt and len(prompt["points"]) == 1
        if "points" in prompt:
            kwargs = {"input_points": prompt["points"][None, None],
                      "input_labels": prompt["labels"][None, None]}
        else:
            kwargs = {"input_points": torch.zeros(1, 1, 1, 2),
                      "input_labels": -torch.ones(1, 1, 1, dtype=torch.long),
                      "input_boxes": prompt["box"].reshape(1, 1, 4)}
        with torch.no_grad():
            out = tracker(pixel_values=pixels, multimask_output=multimask, **kwargs)
        low = out.pred_masks[:, 0]
        if multimask:
            best = int(out.iou_scores[0, 0].argmax())
            low = low[:, best : best + 1]
        assert float(out.object_score_logits[0, 0, 0]) > 0  # not gated: real logits compared
        theirs = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear")
        assert float((ours - theirs).abs().max()) <= TOLERANCE
        assert float(theirs.std()) > 1e-3  # logits that vary over the image


@pytest.mark.slow
def test_point_box_and_text_with_box_prompts_equal_transformers_models(
    sam3_built: sam3_files.TinySam3,
) -> None:
    from easel.nodes.sam3 import SAM3Detect

    image = torch.rand(1, 3, 40, 56, generator=torch.Generator().manual_seed(6))
    handle = easel_handle(sam3_built, SIZE)

    class Ctx:
        def check_cancelled(self) -> None: ...

        def progress(self, *_: Any) -> None: ...

    def run(conditioning: Any, bboxes: Any, positive: str, negative: str) -> Any:
        return SAM3Detect.fn(
            Ctx(), handle, image, conditioning, bboxes, positive, negative, 0.0, 1, True
        )

    # two points: one positive, one negative (coordinates scale to SAM's 336 x 336)
    ours = run(None, None, '[{"x": 20, "y": 10}]', '[{"x": 40, "y": 30}]')["masks"]
    points = torch.tensor([[20 / 56 * SIZE, 10 / 40 * SIZE], [40 / 56 * SIZE, 30 / 40 * SIZE]])
    theirs = reference_prompted(sam3_built, image, 1, points=points, labels=torch.tensor([1, 0]))
    assert ours.shape == (1, 40, 56) and torch.equal(ours[0], theirs)
    # one point: the best of SAM's three masks
    ours = run(None, None, '[{"x": 30, "y": 20}]', "")["masks"]
    point = torch.tensor([[30 / 56 * SIZE, 20 / 40 * SIZE]])
    theirs = reference_prompted(sam3_built, image, 1, points=point, labels=torch.tensor([1]))
    assert torch.equal(ours[0], theirs)
    # a box without text (ComfyUI's dict form)
    box = {"x": 8, "y": 6, "width": 30, "height": 20}
    ours = run(None, box, "", "")["masks"]
    scaled = torch.tensor([8 / 56, 6 / 40, 38 / 56, 26 / 40]) * SIZE
    theirs = reference_prompted(sam3_built, image, 1, box=scaled)
    assert torch.equal(ours[0], theirs)
    # text with a box prompt: the detector's geometry prompt
    conditioning = {"sam3_prompts": easel_prompts(sam3_built, f"{PROMPT}:2")}
    ours_out = run(conditioning, [[box]], "", "")
    geometry = torch.tensor([[23 / 56, 16 / 40, 30 / 56, 20 / 40]])
    theirs, their_boxes = reference(sam3_built, image, 0.0, 1, 2, SIZE, geometry)
    assert torch.equal((ours_out["masks"] > 0).any(0).float(), theirs)
    for found, ref in zip(ours_out["bboxes"][0], their_boxes, strict=True):
        assert max(abs(found[k] - ref[k]) for k in found) <= TOLERANCE


@pytest.mark.slow
def test_refined_logits_equal_the_tracker_models_forward(sam3_built: sam3_files.TinySam3) -> None:
    """The SAM heads on the shared ViT give the complete Sam3TrackerModel's logits."""
    from easel.models import sam3_detect

    generator = torch.Generator().manual_seed(2)
    crop = torch.rand(1, 3, 30, 20, generator=generator)
    coarse = torch.randn(1, 1, 30, 20, generator=generator)
    _, tracker = reference_models(sam3_built, SIZE)
    handle = easel_handle(sam3_built, SIZE)
    prompt = F.interpolate(coarse, size=(SIZE, SIZE), mode="bilinear")
    with torch.no_grad():
        pixels = _pixels(crop, SIZE)
        result = tracker(pixel_values=pixels, input_masks=prompt, multimask_output=False)
    features = sam3_detect.tracker_features(handle, sam3_detect.preprocess(crop, SIZE))
    ours = sam3_detect.segment(handle, features, prompt)
    low = result.pred_masks[:, 0]
    present = result.object_score_logits[:, 0] > 0
    low = torch.where(present[:, :, None, None], low, torch.full_like(low, -1024.0))
    theirs = F.interpolate(low, size=(SIZE, SIZE), mode="bilinear")
    assert float((ours - theirs).abs().max()) <= TOLERANCE


def test_the_padding_box_leaves_only_the_geometry_cls_token(
    sam3_built: sam3_files.TinySam3,
) -> None:
    """Meta's SAM 3 runs its geometry encoder on an empty prompt: the result is the CLS token.
    A padding box (label -10) gives the same token, masked padding beside it."""
    detector = sam3_built.detector
    generator = torch.Generator().manual_seed(3)
    feats = (torch.randn(1, sam3_files.D_MODEL, 6, 6, generator=generator),)
    pos = (torch.randn(1, sam3_files.D_MODEL, 6, 6, generator=generator),)
    with torch.no_grad():
        empty = detector.geometry_encoder(
            box_embeddings=torch.zeros(1, 0, 4),
            box_mask=torch.zeros(1, 0, dtype=torch.bool),
            box_labels=torch.zeros(1, 0, dtype=torch.long),
            img_feats=feats,
            img_pos_embeds=pos,
        )
        padded = detector.geometry_encoder(
            box_embeddings=torch.zeros(1, 1, 4),
            box_mask=torch.zeros(1, 1, dtype=torch.bool),
            box_labels=torch.zeros(1, 1, dtype=torch.long),
            img_feats=feats,
            img_pos_embeds=pos,
        )
    assert empty.last_hidden_state.shape[1] == 1
    valid = padded.attention_mask[0].bool()
    assert int(valid.sum()) == 1
    difference = padded.last_hidden_state[0][valid] - empty.last_hidden_state[0]
    assert float(difference.abs().max()) <= TOLERANCE


def test_prompt_syntax_splits_commas_and_counts(sam3_built: sam3_files.TinySam3) -> None:
    from easel.models.sam3_text import parse_prompts

    assert parse_prompts("(guitar), eye:2, window panels : 4") == [
        ("guitar", 1), ("eye", 2), ("window panels", 4)
    ]
    prompts = easel_prompts(sam3_built, "guitar, eye:2")
    assert [p[2] for p in prompts] == [1, 2]
    ids, attention = _tokens("eye")
    with torch.no_grad():
        theirs = sam3_built.detector.text_encoder(input_ids=ids, attention_mask=attention)
    assert torch.equal(prompts[1][1], attention)
    assert float((prompts[1][0] - theirs.last_hidden_state).abs().max()) <= TOLERANCE


# -- the ComfyUI template -------------------------------------------------------------------
TEMPLATE = "utility_image_segment_sam3"
TEMPLATE_FILE = "sam3.1_multiplex_fp16.safetensors"


@pytest.mark.skipif(
    importlib.util.find_spec("comfyui_workflow_templates_json") is None,
    reason="the templates corpus is in the dev extra (in CI)",
)
def test_sam3_template_runs_end_to_end_on_a_tiny_sam31_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """ComfyUI's image segmentation template, as shipped: CheckpointLoaderSimple on the SAM 3.1
    file it names (a tiny one), SAM3_Detect at 1008 pixels with two refinements, InvertMask,
    JoinImageWithAlpha, the previews."""
    from PIL import Image as PILImage

    from easel.comfy.convert import to_easel
    from easel.core.executor import Executor
    from easel.core.plugins import load_plugins
    from easel.models.manager import ModelManager
    from easel.workflow_edit import set_input
    from tests.families.workflows import only, template

    sam3_files.build(tmp_path, TEMPLATE_FILE, sam31=True)
    write_comfy_tokenizer(tmp_path / "ComfyUI")
    roots = [tmp_path / "models", tmp_path / "ComfyUI"]
    monkeypatch.setenv("EASEL_MODELS_DIR", os.pathsep.join(str(r) for r in roots))
    generator = torch.Generator().manual_seed(4)
    pixels = (torch.rand(48, 64, 3, generator=generator) * 255).to(torch.uint8)
    PILImage.fromarray(pixels.numpy(), "RGB").save(tmp_path / "input.png")
    workflow = to_easel(template(TEMPLATE))
    nodes = workflow["nodes"]
    set_input(workflow, f"{only(nodes, 'LoadImage')}.image", str(tmp_path / "input.png"))
    manager = ModelManager(roots, device="cpu", dtype=torch.float32)
    executor = Executor(load_plugins(entry_points=False), services={"models": manager})
    result = executor.run(workflow, output_dir=tmp_path / "out", keep_values=True)
    assert result.ok, result.failures
    detect = result.values[only(nodes, "SAM3Detect")]
    mask = detect["masks"]
    assert mask.shape == (1, 48, 64)
    assert set(torch.unique(mask).tolist()) <= {0.0, 1.0}
    assert isinstance(detect["bboxes"], list) and len(detect["bboxes"]) == 1
    joined = result.values[only(nodes, "JoinImageWithAlpha")]["image"]
    assert joined.shape == (1, 4, 48, 64)
    assert torch.equal(joined[0, 3], mask[0])  # alpha = 1 - inverted mask
    assert result.ui  # the previews wrote their images
