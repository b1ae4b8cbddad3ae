"""Batches of workflow runs: sweeps, manifests, local worker processes and Dask clusters."""
