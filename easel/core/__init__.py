"""The engine: node declarations, workflow graphs, cache, executor and plugins (no torch)."""
