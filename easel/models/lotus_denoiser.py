"""Lotus's network call for the sampler loop (easel.models.sampling.denoise): the UNet with
the text embedding (LotusConditioning's), Lotus's task embedding as its class labels, and the
latent as it is (ComfyUI's IMG_TO_IMG model sampling: no 1 / sqrt(sigma^2 + 1) input scaling;
the loop reads `unscaled_input`). The output is the clean latent itself (prediction "sample").
"""

from __future__ import annotations

from typing import Any

from easel.models.conditioning import Cond
from easel.models.families.lotus import task_embedding
from easel.models.sampling import UNetNetwork


class LotusNetwork(UNetNetwork):
    unscaled_input = True

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

        base = super().condition(
            cond, batch, device, dtype, pixel_size=pixel_size, negative=negative
        )
        task = torch.tensor([task_embedding()], device=device, dtype=dtype).expand(batch, -1)
        return Cond(base.encoder_hidden_states, {"class_labels": task}, base.control)

    def stack(self, a: Cond, b: Cond) -> Cond | None:
        import torch

        if a.control or b.control or a.encoder_hidden_states.shape != b.encoder_hidden_states.shape:
            return None
        assert a.added is not None and b.added is not None
        return Cond(
            torch.cat([a.encoder_hidden_states, b.encoder_hidden_states]),
            {"class_labels": torch.cat([a.added["class_labels"], b.added["class_labels"]])},
        )

    def __call__(self, x: Any, t: Any, cond: Cond) -> Any:
        assert cond.added is not None
        if cond.control:
            raise ValueError("Lotus takes no ControlNet")
        return self.call(
            x,
            t,
            encoder_hidden_states=cond.encoder_hidden_states,
            class_labels=cond.added["class_labels"],
            return_dict=False,
        )[0]
