"""The Ideogram 4 network adapter of the sampler loop, calling Ideogram4Transformer2DModel as
Ideogram4Pipeline does. The loop keeps Easel's Flux.2 latents [B, 128, h, w] (the VAE's 32
channels in 2x2 patches, channel c * 4 + row * 2 + column, ComfyUI's layout); the transformer
reads tokens whose 128 features are ordered (row, column, channel), as ComfyUI's
`_img_to_tokens` and the pipeline's latents.

- A conditional call packs one sequence `[text tokens | image tokens]`: the text features
  (the conditioning's `embeds`) on the text rows, the latent tokens on the image rows, text
  positions 0 .. T-1 on all three rotary axes, image positions (0, row, column) offset by
  65536, one attention segment (masked-out text tokens get a segment and role of their own).
- An image-only call (the unconditional transformer of DualModelGuider, or a file without a
  text projection) runs the image tokens alone with no text.
- Model time is 1 - sigma (0 is noise) and the transformer predicts the velocity towards the
  image: Easel's flow prediction (noise - image) is its negative, as the pipeline steps with
  `-v`.

DualModelGuider (easel.nodes.ideogram4) sends each side of the guidance to its own transformer:
a conditioning dict may carry a `Route` under ROUTE naming the transformer to call and whether
it reads text; the route's `clock` records the step's sigma for CFGOverride's schedule.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from easel.models.conditioning import Cond
from easel.models.families.ideogram4 import IMAGE_POSITION_OFFSET, LLM_TOKEN, OUTPUT_IMAGE

ROUTE = "ideogram4_route"
PATCH = 2
PADDING_SEGMENT = -1


@dataclass
class StepClock:
    """The noise level of the step being run (set by the network, read by the guider)."""

    sigma: float = 1.0


@dataclass(eq=False)
class Route:
    """Which transformer a conditioning goes through (`call`, `module`), whether it reads
    text (`image_only`: no), and the clock shared by the two sides of one guider."""

    call: Any
    module: Any
    image_only: bool
    clock: StepClock = field(default_factory=StepClock)


def to_tokens(latents: Any) -> Any:
    """[B, 128, h, w] (channel c * 4 + row * 2 + column) -> [B, h * w, 128] with features
    ordered (row, column, channel)."""
    b, c, h, w = latents.shape
    x = latents.view(b, c // (PATCH * PATCH), PATCH, PATCH, h, w).permute(0, 4, 5, 2, 3, 1)
    return x.reshape(b, h * w, c)


def from_tokens(tokens: Any, height: int, width: int) -> Any:
    """The inverse of `to_tokens`."""
    b, _, c = tokens.shape
    x = tokens.reshape(b, height, width, PATCH, PATCH, c // (PATCH * PATCH))
    return x.permute(0, 5, 3, 4, 1, 2).reshape(b, c, height, width)


def image_positions(rows: int, columns: int, device: Any) -> Any:
    """(0, row, column) + 65536 for each image token, [rows * columns, 3]."""
    import torch

    h = torch.arange(rows, device=device).view(-1, 1).expand(rows, columns).reshape(-1)
    w = torch.arange(columns, device=device).view(1, -1).expand(rows, columns).reshape(-1)
    return torch.stack([torch.zeros_like(h), h, w], dim=1) + IMAGE_POSITION_OFFSET


class Ideogram4Network:
    """Calls an Ideogram4Transformer2DModel (`call`: the module, or it with LoRA patches
    bound), or the transformer a conditioning's Route names."""

    def __init__(self, transformer: Any, call: Any, family: Any) -> None:
        self.transformer, self.call, self.family = transformer, call, family
        self.step, self.total = 0, 0

    def condition(
        self,
        cond: dict[str, Any],
        batch: int,
        device: Any,
        dtype: Any,
        *,
        pixel_size: tuple[int, int],
        negative: bool = False,
    ) -> Cond:
        import torch

        route = cond.get(ROUTE)
        if route is None:
            if getattr(self.family, "cfg_overrides", ()):
                raise ValueError(
                    "CFGOverride is applied by DualModelGuider: guide this Ideogram 4 model with "
                    "DualModelGuider, or remove CFGOverride"
                )
            text_free = bool(getattr(self.transformer, "easel_text_free", False))
            route = Route(self.call, self.transformer, text_free)
        if cond.get("control"):
            raise ValueError("ControlNet conditioning is not supported for Ideogram 4 models")
        if cond.get("reference_latents"):
            raise ValueError("Ideogram 4 takes no reference latents (ReferenceLatent)")
        features = int(route.module.config.llm_features_dim)
        if route.image_only:
            return Cond(None, {"route": route, "features": features}, None)
        embeds = cond.get("embeds")
        if embeds is None or embeds.dim() != 3:
            raise ValueError(
                "Ideogram 4 needs Qwen3-VL's tapped hidden states: encode the prompt with an "
                "Ideogram 4 CLIP (TextEncoderLoader type ideogram4)"
            )
        if embeds.shape[-1] != features:
            raise ValueError(
                f"text embeddings have width {embeds.shape[-1]} but this Ideogram 4 model reads "
                f"{features} (13 layers of its text encoder): was the CLIP made for another model?"
            )
        mask = cond.get("attention_mask")
        if mask is None or tuple(mask.shape) != tuple(embeds.shape[:2]):
            mask = torch.ones(embeds.shape[:2], dtype=torch.bool)
        mask = mask.to(device=device, dtype=torch.bool)
        if mask.shape[0] != batch:
            mask = mask.expand(batch, -1)
        hidden = torch.as_tensor(embeds).to(device=device, dtype=dtype)
        if hidden.shape[0] != batch:
            hidden = hidden.expand(batch, *hidden.shape[1:])
        return Cond(hidden, {"route": route, "features": features, "mask": mask}, None)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        return None  # each side is its own call (and with DualModelGuider its own model)

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        import torch

        assert cond.added is not None
        route: Route = cond.added["route"]
        features = int(cond.added["features"])
        batch, _, rows, columns = x.shape
        device, dtype = x.device, x.dtype
        route.clock.sigma = float(t.reshape(-1)[0]) / 1000.0
        tokens = to_tokens(x)
        count = rows * columns
        positions = image_positions(rows, columns, device)
        model_time = (1.0 - t.float().reshape(-1)[:1] / 1000.0).expand(batch).to(dtype)
        if route.image_only:
            hidden = tokens
            text = torch.zeros(batch, count, features, device=device, dtype=dtype)
            position_ids = positions.unsqueeze(0).expand(batch, count, 3)
            segments = torch.ones(batch, count, dtype=torch.long, device=device)
            roles = torch.full((batch, count), OUTPUT_IMAGE, dtype=torch.long, device=device)
        else:
            embeds = cond.encoder_hidden_states
            mask = cond.added["mask"]
            length = embeds.shape[1]
            hidden = torch.cat([tokens.new_zeros(batch, length, tokens.shape[-1]), tokens], 1)
            text = torch.cat([embeds, embeds.new_zeros(batch, count, features)], dim=1)
            text_positions = torch.arange(length, device=device).view(-1, 1).expand(length, 3)
            position_ids = torch.cat([text_positions, positions], dim=0)
            position_ids = position_ids.unsqueeze(0).expand(batch, length + count, 3)
            segments = torch.ones(batch, length + count, dtype=torch.long, device=device)
            segments[:, :length][~mask] = PADDING_SEGMENT
            roles = torch.full((batch, length + count), OUTPUT_IMAGE, dtype=torch.long)
            roles = roles.to(device)
            roles[:, :length] = torch.where(mask, LLM_TOKEN, 0)
        out = route.call(
            hidden_states=hidden,
            timestep=model_time,
            encoder_hidden_states=text,
            position_ids=position_ids,
            segment_ids=segments,
            indicator=roles,
            return_dict=False,
        )[0]
        return -from_tokens(out[:, -count:], rows, columns)
