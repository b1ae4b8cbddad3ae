"""Easel: a plugin-based node-graph workflow engine for text-to-image generation."""

from easel.core.node import Context, Input, NodeError, node
from easel.core.plugins import hookimpl
from easel.core.types import socket_type

__version__ = "0.1.0"

__all__ = ["Context", "Input", "NodeError", "__version__", "hookimpl", "node", "socket_type"]
