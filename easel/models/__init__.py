"""Loading and managing torch models: discovery, formats, device and dtype policy, sharing."""
