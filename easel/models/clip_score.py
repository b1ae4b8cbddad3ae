"""CLIPScore (Hessel et al. 2021): 100 * max(cos(image embedding, text embedding), 0)."""

from __future__ import annotations

from typing import Any


def clip_scores(clip: Any, images: Any, text: str) -> Any:
    """One score per image of a [B, 3, H, W] batch in [0, 1] against `text`."""
    import torch
    import torch.nn.functional as F

    model = clip.manager.place(clip.vision)
    param = next(model.parameters())
    device, dtype = param.device, param.dtype
    size = int(model.config.vision_config.image_size)
    _, _, height, width = images.shape
    short = min(height, width)
    resized = F.interpolate(
        images.float(),
        scale_factor=size / short,
        mode="bicubic",
        antialias=True,
        align_corners=False,
    ).clamp(0, 1)
    top = (resized.shape[2] - size) // 2
    left = (resized.shape[3] - size) // 2
    crop = resized[:, :, top : top + size, left : left + size]
    mean = torch.tensor(clip.image_mean).view(1, 3, 1, 1)
    std = torch.tensor(clip.image_std).view(1, 3, 1, 1)
    pixels = ((crop - mean) / std).to(device, dtype)
    window = int(min(clip.tokenizer.model_max_length, 512))
    tokens = clip.tokenizer(
        [text], padding="max_length", max_length=window, truncation=True, return_tensors="pt"
    )
    with torch.inference_mode():
        image_embeds = model.get_image_features(pixel_values=pixels)
        text_embeds = model.get_text_features(
            input_ids=tokens.input_ids.to(device), attention_mask=tokens.attention_mask.to(device)
        )
    image_embeds = getattr(image_embeds, "pooler_output", image_embeds)
    text_embeds = getattr(text_embeds, "pooler_output", text_embeds)
    cos = F.cosine_similarity(image_embeds.float(), text_embeds.float(), dim=-1)
    return (100 * cos.clamp(min=0)).cpu()
