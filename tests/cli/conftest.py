"""CLI test fixtures: the tiny model family."""

from tests.fixtures.tiny_models import tiny_models

__all__ = ["tiny_models"]
