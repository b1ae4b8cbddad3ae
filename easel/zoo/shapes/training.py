"""Shared training loop: seeding, bf16 autocast, EMA, periodic resumable checkpoints, logging."""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from easel.zoo.shapes.configs import FamilyConfig, StageBudget
from easel.zoo.shapes.data import step_seed


@dataclass
class RunOptions:
    """Options shared by every stage, from the command line."""

    work_dir: Path
    device: str = "cpu"
    steps: int | None = None
    seed: int = 0
    tiny: bool = False
    checkpoint_minutes: float = 3.0
    log_every: int = 50
    threads: int | None = None
    evaluate: bool = True  # score the finished stage with the analyser (off in smoke tests)
    family: FamilyConfig = field(default_factory=FamilyConfig)

    def budget(self, stage: str) -> StageBudget:
        budget = self.family.budgets[stage]
        if self.steps is not None:
            budget = StageBudget(
                self.steps, budget.batch_size, budget.lr, min(budget.warmup, self.steps)
            )
        return budget

    def stage_dir(self, stage: str) -> Path:
        return self.work_dir / stage

    def model_dir(self, stage: str) -> Path:
        """Where a finished stage's `save_pretrained` output lives."""
        return self.work_dir / stage / "model"


def autocast(device: str) -> AbstractContextManager[Any]:
    """bf16 autocast: on CPU it roughly halves step time; on CUDA it is the usual choice."""
    if device.startswith("cuda") or device == "cpu":
        return torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16)
    return nullcontext()


def images_to_tensor(images: np.ndarray, device: str) -> torch.Tensor:
    """uint8 N x H x W x 3 -> float N x 3 x H x W in [-1, 1]."""
    x = torch.from_numpy(np.ascontiguousarray(images)).to(device)
    return x.permute(0, 3, 1, 2).float() / 127.5 - 1.0


def tensor_to_images(x: torch.Tensor) -> np.ndarray:
    """float N x 3 x H x W in [-1, 1] -> uint8 N x H x W x 3."""
    x = ((x.detach().float().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return x.permute(0, 2, 3, 1).cpu().numpy()


def torch_generator(seed: int, stage: str, step: int, device: str) -> torch.Generator:
    """A generator seeded from (seed, stage, step): a resumed run draws the same noise."""
    gen = torch.Generator(device=device.split(":")[0] if device != "cpu" else "cpu")
    gen.manual_seed(step_seed(seed, stage + "/noise", step))
    return gen


def min_snr_weights(scheduler: Any, timesteps: torch.Tensor, gamma: float = 5.0) -> torch.Tensor:
    """Min-SNR-gamma loss weights for epsilon prediction (Hang et al. 2023)."""
    alphas = scheduler.alphas_cumprod.to(timesteps.device)[timesteps]
    snr = alphas / (1 - alphas)
    return torch.clamp(snr, max=gamma) / snr


def add_noise(
    scheduler: Any,
    x0: torch.Tensor,
    gen: torch.Generator,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Sample timesteps and noise; return (noisy, noise, timesteps)."""
    n = x0.shape[0]
    noise = torch.randn(x0.shape, generator=gen, device=x0.device)
    timesteps = torch.randint(
        0, scheduler.config.num_train_timesteps, (n,), generator=gen, device=x0.device
    )
    return scheduler.add_noise(x0, noise, timesteps), noise, timesteps


class StageTrainer:
    """Runs `step_fn(step) -> losses` for a stage, resuming from and writing checkpoints.

    A checkpoint holds every module, the optimizer, the LR schedule, the EMA and the step, so
    a killed run continues where it stopped and, because each step's data and noise are
    seeded by the step index, reaches the same result as an uninterrupted run.
    """

    def __init__(
        self,
        stage: str,
        options: RunOptions,
        modules: dict[str, torch.nn.Module],
        params: list[torch.nn.Parameter],
        budget: StageBudget,
        use_ema: bool = False,
        ema_decay: float = 0.999,
    ):
        from diffusers.optimization import get_cosine_schedule_with_warmup

        self.stage = stage
        self.options = options
        self.modules = modules
        self.budget = budget
        self.dir = options.stage_dir(stage)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.dir / "checkpoint.pt"
        self.optimizer = torch.optim.AdamW(params, lr=budget.lr, weight_decay=1e-4)
        self.lr_schedule = get_cosine_schedule_with_warmup(
            self.optimizer, budget.warmup, budget.steps
        )
        self.ema = None
        if use_ema:
            from diffusers.training_utils import EMAModel

            self.ema = EMAModel(params, decay=ema_decay, use_ema_warmup=True, power=0.75)
        self.params = params
        self.step = 0
        self.elapsed = 0.0
        self._resume()

    def _resume(self) -> None:
        if not self.checkpoint_path.exists():
            return
        state = torch.load(
            self.checkpoint_path, map_location=self.options.device, weights_only=False
        )
        for name, module in self.modules.items():
            module.load_state_dict(state["modules"][name])
        self.optimizer.load_state_dict(state["optimizer"])
        self.lr_schedule.load_state_dict(state["lr_schedule"])
        if self.ema is not None and state.get("ema") is not None:
            self.ema.load_state_dict(state["ema"])
        self.step = state["step"]
        self.elapsed = state["elapsed"]
        self.log(f"resumed at step {self.step} ({self.elapsed / 60:.1f} min trained)")

    def save_checkpoint(self) -> None:
        state = {
            "modules": {name: m.state_dict() for name, m in self.modules.items()},
            "optimizer": self.optimizer.state_dict(),
            "lr_schedule": self.lr_schedule.state_dict(),
            "ema": self.ema.state_dict() if self.ema is not None else None,
            "step": self.step,
            "elapsed": self.elapsed,
        }
        tmp = self.checkpoint_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.checkpoint_path)

    def log(self, message: str) -> None:
        line = f"[{time.strftime('%H:%M:%S')}] {self.stage}: {message}"
        print(line, flush=True)
        with open(self.dir / "train.log", "a") as f:
            f.write(line + "\n")

    def run(self, step_fn: Callable[[int], dict[str, float]]) -> None:
        total = self.budget.steps
        last_ckpt = time.monotonic()
        window: dict[str, list[float]] = {}
        start = time.monotonic()
        start_elapsed, start_step = self.elapsed, self.step
        for module in self.modules.values():
            module.train()
        while self.step < total:
            self.optimizer.zero_grad(set_to_none=True)
            losses = step_fn(self.step)
            torch.nn.utils.clip_grad_norm_(self.params, 1.0)
            self.optimizer.step()
            self.lr_schedule.step()
            if self.ema is not None:
                self.ema.step(self.params)
            self.step += 1
            self.elapsed = start_elapsed + time.monotonic() - start
            for key, value in losses.items():
                window.setdefault(key, []).append(value)
            if self.step % self.options.log_every == 0 or self.step == total:
                rate = (self.step - start_step) / max(self.elapsed - start_elapsed, 1e-9)
                eta = (total - self.step) / max(rate, 1e-9) / 60
                stats = " ".join(f"{k}={np.mean(v):.4f}" for k, v in window.items())
                if any(not math.isfinite(float(np.mean(v))) for v in window.values()):
                    raise FloatingPointError(f"{self.stage}: non-finite loss at step {self.step}")
                self.log(
                    f"step {self.step}/{total} {stats} lr={self.lr_schedule.get_last_lr()[0]:.2e} "
                    f"{rate:.2f} it/s eta {eta:.1f} min"
                )
                window = {}
            if time.monotonic() - last_ckpt > 60 * self.options.checkpoint_minutes:
                self.save_checkpoint()
                last_ckpt = time.monotonic()
        self.save_checkpoint()

    def write_progress(self, extra: dict[str, Any]) -> None:
        import os
        import platform

        info = {
            "stage": self.stage,
            "steps": self.step,
            "minutes": round(self.elapsed / 60, 2),
            "seed": self.options.seed,
            "batch_size": self.budget.batch_size,
            "machine": {
                "device": self.options.device,
                "cpus": os.cpu_count(),
                "torch_threads": torch.get_num_threads(),
                "torch": torch.__version__,
                "platform": platform.platform(),
            },
            **extra,
        }
        (self.dir / "result.json").write_text(json.dumps(info, indent=2))
