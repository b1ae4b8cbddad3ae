"""The model-family registry: the only place that knows architectures."""
