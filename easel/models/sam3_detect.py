"""Text-prompted detection and segmentation with a SAM 3 handle, as ComfyUI's SAM3_Detect does it.

Per image and per prompt: the image, resized to 1008 x 1008 (bilinear) and scaled to [-1, 1],
goes through transformers' Sam3Model; a query is kept when the sigmoid of its score is above
`threshold`, the best `max detections` of the prompt (1 unless the prompt says `:N`) in order
of score. Each kept mask (the detector's logits, resized to the image) is then refined
`refine_iterations` times on a crop around its box (10 % margin, resized to 1008): the SAM
heads take the previous logits as a mask prompt and give new ones. A pixel is in the object
when the refined crop's logit or the detector's logit is above 0. The result is the union of
a frame's objects ([B, H, W]) or every object's mask ([N, H, W], `individual`), and per frame
the kept boxes ({x, y, width, height, score} in pixels).

The SAM heads run as transformers' Sam3TrackerModel does for one image without memory (the
tracker FPN of the shared ViT, its two high-resolution levels projected by the mask decoder's
`conv_s0`/`conv_s1`, the no-memory embedding added to the last); the gating of masks by the
object score (-1024 where the object is absent) and the upsampling to 1008 are SAM 3's
tracker's `_forward_sam_heads`, which transformers leaves to its video model.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from easel.models.errors import ModelError
from easel.models.sam3 import IMAGE_MEAN, IMAGE_STD

NO_OBJECT = -1024.0
PADDING_BOX = -10  # transformers' label of a box that is only padding
CROP_MARGIN = 0.1


def preprocess(image: Any, size: int) -> Any:
    """[B, C, H, W] in [0, 1] -> [B, 3, size, size] normalised as SAM 3 takes it."""
    import torch
    import torch.nn.functional as F

    resized = F.interpolate(image[:, :3].float(), size=(size, size), mode="bilinear")
    mean = torch.tensor(IMAGE_MEAN).view(1, 3, 1, 1)
    std = torch.tensor(IMAGE_STD).view(1, 3, 1, 1)
    return (resized - mean) / std


def detect_prompt(
    handle: Any, vision: Any, embeds: Any, mask: Any, boxes: Any = None
) -> tuple[Any, Any, Any]:
    """(boxes [Q, 4] normalised xyxy, score logits [Q], mask logits [Q, h, w]) for one prompt on
    one image's vision features; `boxes` [N, 4] (normalised cx, cy, w, h) join the prompt as
    positive box prompts."""
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    detector = handle.detector
    device = next(detector.parameters()).device
    dtype = next(detector.parameters()).dtype
    with torch.no_grad():
        projected = detector.text_projection(embeds.to(device=device, dtype=dtype))
        text = BaseModelOutputWithPooling(last_hidden_state=embeds, pooler_output=projected)
        # One padding box (label -10, masked everywhere) makes Sam3Model run its geometry
        # encoder, whose CLS token Meta's SAM 3 (and ComfyUI) append to every text prompt;
        # without a box transformers' Sam3Model leaves the geometry encoder out.
        if boxes is None:
            input_boxes = torch.zeros(1, 1, 4, device=device, dtype=dtype)
            labels = torch.full((1, 1), PADDING_BOX, device=device)
        else:
            input_boxes = boxes[None].to(device=device, dtype=dtype)
            labels = torch.ones(1, boxes.shape[0], dtype=torch.long, device=device)
        out = detector(
            vision_embeds=vision,
            text_embeds=text,
            attention_mask=mask.to(device),
            input_boxes=input_boxes,
            input_boxes_labels=labels,
        )
    return out.pred_boxes[0].float(), out.pred_logits[0].float(), out.pred_masks[0].float()


def tracker_features(handle: Any, pixels: Any) -> list[Any]:
    """The SAM heads' image embeddings of a normalised [1, 3, 1008, 1008] crop: two projected
    high-resolution levels and the last level with the no-memory embedding."""
    heads = handle.heads
    with _no_grad():
        trunk = handle.detector.vision_encoder.backbone(pixels).last_hidden_state
        grid = pixels.shape[-1] // handle.detector.config.vision_config.backbone_config.patch_size
        spatial = trunk.view(trunk.shape[0], grid, grid, -1).permute(0, 3, 1, 2)
        levels, _ = handle.tracker_neck(spatial)
        decoder = heads.mask_decoder
        no_memory = heads.no_memory_embedding.view(1, -1, 1, 1)
        return [decoder.conv_s0(levels[0]), decoder.conv_s1(levels[1]), levels[2] + no_memory]


def segment(
    handle: Any,
    features: list[Any],
    mask_logits: Any = None,
    points: Any = None,
    labels: Any = None,
    box: Any = None,
) -> Any:
    """SAM's mask logits [1, 1, size, size] for one prompt: `mask_logits` [1, 1, size, size]
    (a mask prompt), `points` [N, 2] with `labels` [N] (1 positive, 0 negative) or `box` [4]
    (xyxy), in pixels of the `size` x `size` image. With one point SAM gives three masks and
    the best by predicted IoU is kept (SAM 3's tracker: multimask output for 1 point)."""
    import torch
    import torch.nn.functional as F

    heads = handle.heads
    device = next(heads.parameters()).device
    kwargs: dict[str, Any] = {"image_embeddings": features, "input_masks": mask_logits}
    multimask = points is not None and len(points) == 1
    if points is not None:
        kwargs["input_points"] = points[None, None].to(device)
        kwargs["input_labels"] = labels[None, None].to(device)
    elif box is not None:
        # SAM 3's tracker always passes a point (a "not a point" one without points) beside
        # a box; transformers' Sam3TrackerModel leaves it out unless it is given
        kwargs["input_points"] = torch.zeros(1, 1, 1, 2, device=device)
        kwargs["input_labels"] = -torch.ones(1, 1, 1, dtype=torch.long, device=device)
    if box is not None:
        kwargs["input_boxes"] = box.reshape(1, 1, 4).to(device)
    with _no_grad():
        out = heads(**kwargs, multimask_output=multimask)
        low = out.pred_masks[:, 0]  # [1, M, 288, 288]
        if multimask:
            best = int(out.iou_scores[0, 0].argmax())
            low = low[:, best : best + 1]
        present = out.object_score_logits[:, 0] > 0  # [1, 1]
        low = torch.where(present[:, :, None, None], low, torch.full_like(low, NO_OBJECT))
        return F.interpolate(low, size=(handle.image_size,) * 2, mode="bilinear")


def prompted_mask(
    handle: Any,
    features: list[Any],
    height: int,
    width: int,
    iterations: int,
    **prompt: Any,
) -> Any:
    """[1, H, W] mask of a point or box prompt on the whole image, refined `iterations - 1`
    more times with its own logits (ComfyUI's point and box paths)."""
    import torch.nn.functional as F

    logits = segment(handle, features, **prompt)
    for _ in range(max(0, iterations - 1)):
        logits = segment(handle, features, mask_logits=logits)
    return (F.interpolate(logits, size=(height, width), mode="bilinear")[0] > 0).float().cpu()


def refine(handle: Any, image: Any, coarse: Any, box: Sequence[float], iterations: int) -> Any:
    """One object's [1, H, W] mask from the detector's logits `coarse` [H, W] and its box (xyxy
    pixels) on `image` [C, H, W] (ComfyUI's `_refine_mask`)."""
    import torch
    import torch.nn.functional as F

    height, width = coarse.shape
    coarse_mask = (coarse[None] > 0).float()
    if iterations <= 0 or handle.heads is None:
        return coarse_mask
    x1, y1, x2, y2 = box
    bw, bh = x2 - x1, y2 - y1
    cx1, cy1 = max(0, int(x1 - bw * CROP_MARGIN)), max(0, int(y1 - bh * CROP_MARGIN))
    cx2, cy2 = min(width, int(x2 + bw * CROP_MARGIN)), min(height, int(y2 + bh * CROP_MARGIN))
    if cx2 <= cx1 or cy2 <= cy1:
        return coarse_mask
    crop = image[None, :3, cy1:cy2, cx1:cx2]
    features = tracker_features(handle, preprocess(crop, handle.image_size).to(_device(handle)))
    logits = coarse[cy1:cy2, cx1:cx2][None, None].to(_device(handle))
    for _ in range(iterations):
        prompt = F.interpolate(logits, size=(handle.image_size,) * 2, mode="bilinear")
        logits = segment(handle, features, prompt)
    refined = F.interpolate(logits, size=(cy2 - cy1, cx2 - cx1), mode="bilinear").float().cpu()
    full = torch.zeros(1, height, width)
    full[:, cy1:cy2, cx1:cx2] = refined[0]
    return ((full > 0) | (coarse[None] > 0)).float()


def detect(
    handle: Any,
    image: Any,
    prompts: Sequence[tuple[Any, Any, int]],
    *,
    threshold: float = 0.5,
    refine_iterations: int = 2,
    individual: bool = False,
    box_prompts: Sequence[Sequence[Sequence[float]] | None] | None = None,
    point_prompts: Sequence[tuple[float, float, int]] = (),
    on_image: Callable[[int, int], None] | None = None,
) -> tuple[Any, list[list[dict[str, float]]]]:
    """Masks and boxes of `prompts` ((embeddings, mask, max detections), from
    easel.models.sam3_text) in `image` [B, C, H, W]; see the module docstring.

    `point_prompts` ((x, y, label) in pixels, label 1 positive, 0 negative) are one object
    segmented by the SAM heads. `box_prompts` (per image, xyxy pixel boxes) join the text
    prompts as box prompts, or without text are each an object segmented by the SAM heads."""
    import torch
    import torch.nn.functional as F

    if image.ndim != 4 or image.shape[1] < 3:
        raise ModelError(f"SAM 3 takes RGB images [B, 3, H, W], got {tuple(image.shape)}")
    batch, _, height, width = image.shape
    place(handle)
    image = image.float().cpu()
    pixels = preprocess(image, handle.image_size)
    scale = torch.tensor([width, height, width, height], dtype=torch.float32)
    masks: list[Any] = []
    boxes: list[list[dict[str, float]]] = []
    if (point_prompts or box_prompts) and handle.heads is None:
        raise ModelError("this SAM 3 file has no tracker heads, which point and box prompts need")
    size = handle.image_size
    for index in range(batch):
        with _no_grad():
            frame = pixels[index : index + 1].to(_device(handle))
            vision = handle.detector.get_vision_features(frame)
        objects: list[Any] = []
        frame_boxes: list[dict[str, float]] = []
        image_boxes = _frame_boxes(box_prompts, index)
        whole: list[Any] = []
        if point_prompts or (image_boxes and not prompts):
            whole = tracker_features(handle, frame)
        if point_prompts:
            coords = torch.tensor(
                [[x / width * size, y / height * size] for x, y, _ in point_prompts]
            )
            labels = torch.tensor([label for _, _, label in point_prompts], dtype=torch.long)
            objects.append(
                prompted_mask(
                    handle, whole, height, width, refine_iterations, points=coords, labels=labels
                )
            )
        if image_boxes and not prompts:
            for x1, y1, x2, y2 in image_boxes:
                box = torch.tensor([x1 / width, y1 / height, x2 / width, y2 / height]) * size
                objects.append(
                    prompted_mask(handle, whole, height, width, refine_iterations, box=box)
                )
        geometry = None
        if image_boxes:
            geometry = torch.tensor(
                [
                    [(x1 + x2) / 2 / width, (y1 + y2) / 2 / height, (x2 - x1) / width,
                     (y2 - y1) / height]
                    for x1, y1, x2, y2 in image_boxes
                ]
            )
        for embeds, attention, max_detections in prompts:
            pred_boxes, logits, pred_masks = detect_prompt(
                handle, vision, embeds, attention, geometry
            )
            probs = logits.sigmoid().cpu()
            keep = probs > threshold
            kept_boxes = (pred_boxes.cpu() * scale)[keep]
            kept_probs = probs[keep]
            kept_masks = pred_masks.cpu()[keep]
            order = kept_probs.argsort(descending=True)[:max_detections]
            if len(order):
                chosen_masks = kept_masks[order][None]
                resized = F.interpolate(chosen_masks, size=(height, width), mode="bilinear")[0]
            for rank, chosen in enumerate(order.tolist()):
                x1, y1, x2, y2 = (float(v) for v in kept_boxes[chosen])
                frame_boxes.append(
                    {"x": x1, "y": y1, "width": x2 - x1, "height": y2 - y1,
                     "score": float(kept_probs[chosen])}
                )
                objects.append(
                    refine(handle, image[index], resized[rank], (x1, y1, x2, y2), refine_iterations)
                )
        boxes.append(frame_boxes)
        if objects:
            stacked = torch.cat(objects, dim=0)
            masks.append(stacked if individual else (stacked > 0).any(dim=0).float())
        else:
            empty = torch.zeros(0, height, width) if individual else torch.zeros(height, width)
            masks.append(empty)
        if on_image is not None:
            on_image(index + 1, batch)
    out = torch.cat(masks, dim=0) if individual else torch.stack(masks)
    return out, boxes


def _frame_boxes(boxes: Any, index: int) -> list[Sequence[float]]:
    """The xyxy boxes of image `index`: per-image lists, the last repeated for later images."""
    if not boxes:
        return []
    chosen = boxes[min(index, len(boxes) - 1)]
    return list(chosen or [])


def place(handle: Any) -> None:
    """The handle's modules on the compute device (the model manager's placement)."""
    manager = handle.manager
    if manager is None or not hasattr(manager, "place"):
        return
    for module in (handle.detector, handle.heads, handle.tracker_neck):
        if module is not None:
            manager.place(module)


def _device(handle: Any) -> Any:
    return next(handle.detector.parameters()).device


def _no_grad() -> Any:
    import torch

    return torch.no_grad()
