"""Vectorised NumPy kernels, one file per topic."""
