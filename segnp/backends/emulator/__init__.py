"""A CPU emulator of segnp's CUDA kernels: the same .cu sources and launchers, run on
NumPy arrays through g++, so that CI and readers without a GPU can run and test them.
"""
from .runtime import EmulatorKernel, EmulatorRuntime

__all__ = ["EmulatorRuntime", "EmulatorKernel"]
