"""A local plugin file for the CLI tests: registers the engine test nodes."""

import easel
from tests.core.sample_nodes import NODES


@easel.hookimpl
def register_nodes(register):
    for node_type in NODES:
        register(node_type)
