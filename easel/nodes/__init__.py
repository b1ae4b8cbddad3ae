"""The built-in nodes, registered as the plugin "easel" through the same hooks as any other."""
