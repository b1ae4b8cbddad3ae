"""The model manager: loads each model once, shares it, places it on a device, reports it."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.models import devices, discovery, loading
from easel.models.discovery import ModelEntry
from easel.models.errors import ModelError
from easel.models.handles import (
    ClipHandle,
    ModelHandle,
    PriorHandle,
    TextEncoderPart,
    UpscalerHandle,
    VaeHandle,
)

TRUTHY = ("1", "true", "yes", "on")
UPSCALER_INFO_FILES = ("upscaler.json", "easel_upscaler.json", "easel.json")


@dataclass
class Held:
    """One loaded module and what `describe()` says about it."""

    key: tuple[str, ...]
    module: Any
    last_used: float
    seconds: float


def _module_bytes(module: Any) -> int:
    params = getattr(module, "parameters", None)
    if params is None:
        return 0
    total = sum(p.numel() * p.element_size() for p in params())
    buffers = getattr(module, "buffers", None)
    if buffers is not None:
        total += sum(b.numel() * b.element_size() for b in buffers())
    return int(total)


class ModelManager:
    """Loads models found under `roots` once and hands out shared handles.

    Modules are loaded on the CPU and moved to the compute device when a node uses them
    (`place`); when the accelerator runs short of memory, the least recently used modules go
    back to the CPU first.
    """

    def __init__(
        self,
        roots: Iterable[Path | str] | None = None,
        *,
        device: Any = None,
        dtype: Any = None,
        allow_unsafe_pickle: bool = False,
        reserve_bytes: int = 512 * 1024**2,
    ) -> None:
        self.roots = [Path(r) for r in roots] if roots is not None else discovery.model_roots()
        if device is None:
            device = devices.pick_device()
        elif isinstance(device, str):
            device = devices.pick_device(device)
        self.device = device
        self.dtype = dtype if dtype is not None else devices.pick_dtype(self.device)
        self.allow_unsafe_pickle = allow_unsafe_pickle
        self.reserve_bytes = reserve_bytes
        self.loads = 0  # modules read from disk, for tests and `describe`
        self._held: dict[tuple[str, ...], Held] = {}
        self._handles: dict[tuple[str, ...], Any] = {}
        self._lock = threading.RLock()

    @classmethod
    def from_environment(cls, environ: Mapping[str, str] | None = None) -> ModelManager:
        """Roots from EASEL_MODELS_DIR, device from EASEL_DEVICE, dtype from EASEL_DTYPE,
        pickle policy from EASEL_ALLOW_UNSAFE_PICKLE."""
        env = os.environ if environ is None else environ
        device, dtype = devices.from_environment(env)
        allow = env.get("EASEL_ALLOW_UNSAFE_PICKLE", "").lower() in TRUTHY
        return cls(
            discovery.model_roots(env), device=device, dtype=dtype, allow_unsafe_pickle=allow
        )

    # -- discovery -----------------------------------------------------------------
    def entries(self) -> dict[str, ModelEntry]:
        return discovery.discover(roots=self.roots)

    def checkpoint_names(self) -> list[str]:
        return discovery.checkpoint_names(roots=self.roots)

    def names_with_part(self, part: str) -> list[str]:
        return discovery.names_with_part(part, roots=self.roots)

    def names(self, kind: str) -> list[str]:
        """Model names of one kind (`checkpoints`, `loras`, ...) as ComfyUI writes them."""
        return discovery.kind_names(kind, roots=self.roots)

    def resolve(self, kind: str, name: str) -> Path:
        """The path of model `name` of `kind`; ModelError saying where it looked."""
        return discovery.resolve(kind, name, roots=self.roots)

    def _entry(self, name: str, available: list[str], what: str) -> ModelEntry:
        base = name.removesuffix("/decoder") if name.endswith("/decoder") else name
        entry = self.entries().get(base)
        if entry is None or name not in available:
            shown = (
                ", ".join(available)
                or "none (put models in " + ", ".join(str(r) for r in self.roots[:2]) + ")"
            )
            raise ModelError(f"no {what} named {name!r}; available: {shown}")
        return entry

    # -- loading once ----------------------------------------------------------------
    def _load(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        with self._lock:
            held = self._held.get(key)
            if held is None:
                started = time.perf_counter()
                module = load()
                now = time.time()
                held = Held(key, module, now, time.perf_counter() - started)
                self._held[key] = held
                self.loads += 1
            held.last_used = time.time()
            return held.module

    def load_module(self, key: tuple[str, ...], load: Callable[[], Any]) -> Any:
        """The module `load()` reads, loaded once under `key` (e.g. `(path, "controlnet")`) and
        shared; held, placed and described like the checkpoints' modules."""
        return self._load(key, load)

    def _handle(self, key: tuple[str, ...], make: Callable[[], Any]) -> Any:
        with self._lock:
            if key not in self._handles:
                self._handles[key] = make()
            return self._handles[key]

    def _module(self, folder: Path, library: str, class_name: str) -> Any:
        key = (str(folder.resolve()), class_name)
        return self._load(
            key,
            lambda: loading.load_module(
                folder, library, class_name, self.dtype, self.allow_unsafe_pickle
            ),
        )

    def module(self, folder: Path, library: str, class_name: str) -> Any:
        """One diffusers/transformers module (or tokenizer) from a folder, loaded once."""
        return self._module(folder, library, class_name)

    def _legacy_single_file(self, path: Path) -> dict[str, Any]:
        key = str(path.resolve())
        with self._lock:
            if (key, "unet") not in self._held:
                parts = loading.load_single_file(path, self.dtype, self.allow_unsafe_pickle)
                for part, module in parts.items():
                    if module is not None:
                        self._hold((key, part), module)
            return {
                part: held.module
                for (path_key, part), held in self._held.items()
                if path_key == key
            }

    def single_file_parts(self, path: Path, load: Callable[[], Any]) -> Any:
        """A single file's CheckpointParts, loaded once (`load()` reads it); each module is
        held (and placed, described) like any other."""
        key = (str(path.resolve()), "single_file")
        parts = self._load(key, load)
        with self._lock:
            modules = [("unet", parts.unet), ("vae", parts.vae)] + [
                (f"text_encoder:{spec.key}", model) for spec, model in parts.text
            ]
            for part, module in modules:
                if module is not None and (key[0], part) not in self._held:
                    self._hold((key[0], part), module)
        return parts

    def _hold(self, key: tuple[str, ...], module: Any) -> None:
        """Hold a module loaded as part of another (a single file's UNet, VAE, towers)."""
        self._load(key, lambda: module)

    def clip_tokenizer(self, checkpoint: Path, pad_token: str = "<|endoftext|>") -> Any:
        """The CLIP tokenizer for a single file's text towers (which carry none): a legacy
        `<name>.config/tokenizer` beside it, else what easel.models.tokenizers finds, padding
        with `pad_token` (SDXL's bigG and SD 2 pad with "!")."""
        sidecar = checkpoint.with_name(checkpoint.stem + discovery.CONFIG_SUFFIX) / "tokenizer"
        if (sidecar / "vocab.json").is_file():
            return self._load(
                (str(sidecar.resolve()), "tokenizer"), lambda: _auto_tokenizer(sidecar)
            )
        from easel.models import tokenizers

        key = "g" if pad_token == "!" else "l"
        return self._load(
            ("clip-tokenizer", key),
            lambda: tokenizers.clip_tokenizer(
                key,
                checkpoint=checkpoint.name,
                contents="Stable Diffusion text encoder weights",
                roots=self.roots,
            ),
        )

    def class_of(self, folder: Path, default: str) -> tuple[str, str]:
        """(library, class) of the module in `folder`, from its config.json."""
        return self._class_of(folder, default)

    def _class_of(self, folder: Path, default: str) -> tuple[str, str]:
        config = folder / "config.json"
        if config.is_file():
            data = loading.read_json(config)
            if "_class_name" in data:
                return "diffusers", str(data["_class_name"])
            architectures = data.get("architectures") or []
            if architectures:
                return "transformers", str(architectures[0])
        library = "transformers" if default.startswith("CLIP") else "diffusers"
        return library, default

    # -- checkpoints -----------------------------------------------------------------
    def load_checkpoint(self, name: str) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
        """MODEL, CLIP and VAE of a checkpoint (or of `<bundle>/decoder`), shared."""
        entry = discovery.find("checkpoints", name, roots=self.roots)
        decoder = "decoder" if name.endswith("/decoder") else ""
        return self._handle(
            ("checkpoint", str(entry.path), decoder), lambda: self._make_checkpoint(name, entry)
        )

    def _make_checkpoint(
        self, name: str, entry: ModelEntry
    ) -> tuple[ModelHandle, ClipHandle | None, VaeHandle]:
        from easel.models import checkpoints, family_files

        single = entry.format == "single_file"
        family_module = family_files.checkpoint_module(entry.path, self, folder=not single)
        if family_module is not None and single:
            return family_module.single_file_checkpoint(name, entry.path, self)  # type: ignore[no-any-return]
        if family_module is not None:
            return family_module.folder_checkpoint(name, entry.path, self)  # type: ignore[no-any-return]
        if entry.format == "single_file":
            sidecar = entry.path.with_name(entry.path.stem + discovery.CONFIG_SUFFIX)
            if (sidecar / "model_index.json").is_file():
                return checkpoints.legacy_single_file(
                    name, self._legacy_single_file(entry.path), self
                )
            return checkpoints.single_file_checkpoint(name, entry.path, self)
        if name.endswith("/decoder") and "decoder" in entry.parts:
            return checkpoints.decoder_checkpoint(name, entry.path, "clip" in entry.parts, self)
        return checkpoints.folder_checkpoint(name, entry.path, self)

    def load_vae(self, name: str) -> VaeHandle:
        """A VAE from the `vae/` folder: a file (original or diffusers layout) or an
        AutoencoderKL folder; its latent scaling comes from the latents it decodes."""
        path = self.resolve("vae", name)

        def make() -> VaeHandle:
            if path.is_dir():
                module = self._module(path, *self._class_of(path, "AutoencoderKL"))
            else:
                from easel.models.state_dicts import read_state_dict
                from easel.models.vae_files import load_vae_file

                module = self._load(
                    (str(path.resolve()), "vae"),
                    lambda: load_vae_file(
                        path, read_state_dict(path, self.allow_unsafe_pickle), self.dtype
                    ),
                )
            return VaeHandle(name, module, self, standalone=True)

        return self._handle(("vae", str(path)), make)

    # -- CLIP, prior, upscaler -----------------------------------------------------------
    def load_clip(self, name: str) -> ClipHandle:
        """A full CLIP model (both towers): a bundle's `clip/` or a CLIP folder."""
        entry = self._entry(name, self.names_with_part("clip"), "CLIP model")
        return self._handle(("clip", name), lambda: self._make_clip(name, entry))

    def _make_clip(self, name: str, entry: ModelEntry) -> ClipHandle:
        folder = entry.path / "clip" if "clip" in entry.parts else entry.path
        model = self._module(folder, *self._class_of(folder, "CLIPModel"))
        tokenizer_dir = folder / "tokenizer" if (folder / "tokenizer").is_dir() else folder
        tokenizer = self._load(
            (str(tokenizer_dir.resolve()), "tokenizer"), lambda: _auto_tokenizer(tokenizer_dir)
        )
        part = TextEncoderPart(
            "", tokenizer, model.text_model, text_projection=getattr(model, "text_projection", None)
        )
        handle = ClipHandle(
            name, (part,), self, vision=model if hasattr(model, "vision_model") else None
        )
        pre = folder / "preprocessor_config.json"
        if pre.is_file():
            data = loading.read_json(pre)
            handle.image_mean = tuple(data.get("image_mean", handle.image_mean))
            handle.image_std = tuple(data.get("image_std", handle.image_std))
        return handle

    def load_prior(self, name: str) -> PriorHandle:
        """An unCLIP prior: a bundle's `prior/` (+ `prior_scheduler/`) or a prior pipeline."""
        entry = self._entry(name, self.names_with_part("prior"), "prior")
        return self._handle(("prior", name), lambda: self._make_prior(name, entry))

    def _make_prior(self, name: str, entry: ModelEntry) -> PriorHandle:
        folder = entry.path / "prior"
        prior = self._module(folder, *self._class_of(folder, "PriorTransformer"))
        for candidate in (entry.path / "prior_scheduler", folder, entry.path / "scheduler"):
            config = loading.scheduler_config(candidate)
            if config and config.get("_class_name") in (
                "UnCLIPScheduler",
                "DDPMScheduler",
                "DDIMScheduler",
            ):
                break
        else:
            config = {}
        return PriorHandle(
            name, prior, str(config.get("_class_name", "UnCLIPScheduler")), config, self
        )

    def load_upscaler(self, name: str) -> UpscalerHandle:
        """A diffusion upscaler: a bundle's `upscaler/` (UNet2DModel, scheduler, info JSON)."""
        entry = self._entry(name, self.names_with_part("upscaler"), "upscale model")
        return self._handle(("upscaler", name), lambda: self._make_upscaler(name, entry))

    def _make_upscaler(self, name: str, entry: ModelEntry) -> UpscalerHandle:
        folder = entry.path / "upscaler"
        unet_dir = folder / "unet" if (folder / "unet").is_dir() else folder
        unet = self._module(unet_dir, *self._class_of(unet_dir, "UNet2DModel"))
        sched_dir = folder / "scheduler" if (folder / "scheduler").is_dir() else folder
        sched = loading.scheduler_config(sched_dir)
        info: dict[str, Any] = {}
        for file_name in UPSCALER_INFO_FILES:
            if (folder / file_name).is_file():
                info = loading.read_json(folder / file_name)
                break
        factor = int(info.get("factor") or info.get("scale") or 0)
        if factor <= 0:
            raise ModelError(f'{folder} has no upscaler.json with its "factor"')
        return UpscalerHandle(
            name,
            unet,
            str(sched.get("_class_name", "DDPMScheduler")),
            sched,
            factor,
            self,
            str(info.get("upsample", "bicubic")),
            info,
        )

    # -- placement -------------------------------------------------------------------
    def place(self, module: Any) -> Any:
        """`module` on the compute device, moving least recently used ones off when short."""
        import torch

        with self._lock:
            for held in self._held.values():
                if held.module is module:
                    held.last_used = time.time()
            if self.device.type == "cpu" or not isinstance(module, torch.nn.Module):
                return module
            current = next(module.parameters(), None)
            if current is not None and current.device.type == self.device.type:
                return module
            need = _module_bytes(module) + self.reserve_bytes
            free = devices.free_memory(self.device)
            while free is not None and free < need:
                victim = self._least_recent_on_device(exclude=module)
                if victim is None:
                    break
                victim.module.to("cpu")
                torch.cuda.empty_cache()
                free = devices.free_memory(self.device)
            return module.to(self.device)

    def offload(self, module: Any) -> Any:
        """`module` back on the CPU (from an accelerator), its device memory freed."""
        import torch

        with self._lock:
            if not isinstance(module, torch.nn.Module) or _device_type(module) in (None, "cpu"):
                return module
            module.to("cpu")
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
            return module

    # Large text encoders (T5-XXL) go back to the CPU once a prompt is encoded: the
    # transformer that follows needs the device memory more.
    offload_text_encoders_after_use = True

    def offload_text_encoders(self, modules: Iterable[Any]) -> None:
        """Offload text encoders after encoding, when the policy says so."""
        if self.offload_text_encoders_after_use:
            for module in modules:
                self.offload(module)

    def _least_recent_on_device(self, exclude: Any) -> Held | None:
        on_device = [
            h
            for h in self._held.values()
            if h.module is not exclude and _device_type(h.module) == self.device.type
        ]
        return min(on_device, key=lambda h: h.last_used, default=None)

    def describe(self) -> list[dict[str, Any]]:
        """What the manager holds, JSON-able: path, class, device, dtype, bytes, load time."""
        rows = []
        with self._lock:
            for held in self._held.values():
                module = held.module
                first = next(module.parameters(), None) if hasattr(module, "parameters") else None
                rows.append(
                    {
                        "path": held.key[0],
                        "component": held.key[1],
                        "class": type(module).__name__,
                        "device": str(first.device) if first is not None else None,
                        "dtype": str(first.dtype).removeprefix("torch.")
                        if first is not None
                        else None,
                        "bytes": _module_bytes(module),
                        "load_seconds": round(held.seconds, 3),
                        "last_used": held.last_used,
                    }
                )
        return rows


def _device_type(module: Any) -> str | None:
    params = getattr(module, "parameters", None)
    if params is None:
        return None
    first = next(params(), None)
    return first.device.type if first is not None else None


def _auto_tokenizer(folder: Path) -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
