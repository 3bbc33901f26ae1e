"""Runtimes for the two halves of a Mamba-Spike model (import as neurodeploy.runtimes)."""
