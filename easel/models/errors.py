"""Errors of model discovery and loading that a user can act on (nodes turn them into NodeError)."""

from __future__ import annotations


class ModelError(Exception):
    """A model is missing, malformed or refused; the message says what to do."""


class UnsafePickleError(ModelError):
    """A pickle checkpoint was refused because unsafe loading was not allowed."""

    def __init__(self, path: object) -> None:
        super().__init__(
            f"{path} is a pickle file: loading it can run arbitrary code. Convert it to "
            ".safetensors, or pass --allow-unsafe-pickle (EASEL_ALLOW_UNSAFE_PICKLE=1) "
            "if you trust its source."
        )
