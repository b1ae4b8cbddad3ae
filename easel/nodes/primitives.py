"""Value nodes: constants, seeds and small arithmetic that feed other nodes' inputs."""

from __future__ import annotations

import secrets

from easel.core.node import Input, node

MAX_SEED = 2**63 - 1


@node(category="values", outputs={"value": int})
def Int(value: int = 0) -> int:
    """An integer constant to link into several inputs at once."""
    return value


@node(category="values", outputs={"value": float})
def Float(value: float = 0.0) -> float:
    """A float constant."""
    return value


@node(category="values", outputs={"value": str})
def String(value: str = Input("", multiline=True)) -> str:
    """A text constant (prompts shared by several nodes)."""
    return value


@node(category="values", outputs={"seed": int})
def Seed(seed: int = Input(0, ge=0, le=MAX_SEED, widget="seed")) -> int:
    """A seed to share between samplers."""
    return seed


@node(category="values", outputs={"seed": int}, deterministic=False)
def RandomSeed() -> int:
    """A fresh random seed on every run (never cached)."""
    return secrets.randbelow(MAX_SEED)


@node(category="values", outputs={"result": float})
def Math(
    a: float = 0.0,
    b: float = 0.0,
    op: str = Input("add", choices=["add", "subtract", "multiply", "divide", "min", "max"]),
) -> float:
    """Arithmetic on two numbers."""
    if op == "divide" and b == 0:
        from easel.core.node import NodeError

        raise NodeError("division by zero", "b")
    return {
        "add": a + b,
        "subtract": a - b,
        "multiply": a * b,
        "divide": a / b if b else 0.0,
        "min": min(a, b),
        "max": max(a, b),
    }[op]


NODES = [Int, Float, String, Seed, RandomSeed, Math]
