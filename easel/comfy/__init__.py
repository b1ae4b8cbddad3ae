"""Importing ComfyUI workflows (API and UI formats) as Easel workflows."""
