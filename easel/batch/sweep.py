"""Sweep specs (`NODE.INPUT=1,2,3`, `1..16`, `@prompts.txt`) and the items they make."""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from easel.workflow_edit import EditError, split_target


class SweepError(ValueError):
    """A sweep spec that cannot be read."""


@dataclass(frozen=True)
class Sweep:
    """One swept input and its values."""

    target: str
    values: tuple[Any, ...]


def _parse_scalar(text: str) -> Any:
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def parse_sweep(text: str, base: Path | None = None) -> Sweep:
    """`NODE.INPUT=SPEC`: a list `1,2,3`, a range `1..16` (inclusive), or `@file` of lines."""
    target, sep, spec = text.partition("=")
    if not sep or not spec:
        raise SweepError(f"--sweep {text!r}: expected NODE.INPUT=SPEC")
    try:
        split_target(target)
    except EditError as exc:
        raise SweepError(f"--sweep {exc}") from None
    if spec.startswith("@"):
        path = Path(spec[1:])
        if base is not None and not path.is_absolute():
            path = base / path
        try:
            lines = path.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise SweepError(f"--sweep {text!r}: cannot read {path}: {exc.strerror}") from None
        values: tuple[Any, ...] = tuple(
            line.strip() for line in lines if line.strip() and not line.lstrip().startswith("#")
        )
    elif ".." in spec and "," not in spec:
        start, _, stop = spec.partition("..")
        try:
            first, last = int(start), int(stop)
        except ValueError:
            raise SweepError(f"--sweep {text!r}: a range is two integers, like 1..16") from None
        step = 1 if last >= first else -1
        values = tuple(range(first, last + step, step))
    else:
        values = tuple(_parse_scalar(part.strip()) for part in spec.split(","))
    if not values:
        raise SweepError(f"--sweep {text!r}: no values")
    return Sweep(target, values)


def make_items(sweeps: list[Sweep], zipped: bool = False) -> list[dict[str, Any]]:
    """Each item is {target: value}: the cartesian grid, or paired up with `zipped`."""
    if not sweeps:
        return [{}]
    targets = [s.target for s in sweeps]
    if len(set(targets)) != len(targets):
        raise SweepError("the same input is swept twice")
    if zipped:
        lengths = {len(s.values) for s in sweeps}
        if len(lengths) != 1:
            sizes = ", ".join(f"{s.target}: {len(s.values)}" for s in sweeps)
            raise SweepError(f"--zip needs sweeps of equal length ({sizes})")
        combos = list(zip(*(s.values for s in sweeps), strict=True))
    else:
        combos = list(itertools.product(*(s.values for s in sweeps)))
    return [dict(zip(targets, combo, strict=True)) for combo in combos]


def item_label(params: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in params.items()) or "(no parameters)"
