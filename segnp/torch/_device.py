"""Where a call runs, and how its tensors get there: the one module of ``segnp.torch``
that knows about devices, backends, streams and DLPack.

- CPU tensors run on the NumPy backend; CUDA tensors on the CuPy backend, on the
  tensor's device and on PyTorch's current stream (``cupy.cuda.Stream.from_external``),
  so segnp's kernels are ordered with PyTorch's own work.  (segnp's check of a tensor
  lam reads its value, one wait for the stream per call, as segnp itself does.)
- Tensors cross by DLPack both ways (``xp.from_dlpack``, ``torch.from_dlpack``): the
  kernels read the tensors' memory and PyTorch gets segnp's results, with no copy.
- Strides cross too.  Nothing here makes a tensor contiguous: the CUDA launchers copy
  what their RawKernels need contiguous (``backends/cuda/_common.py``), and the NumPy
  kernels read any strides, copying only where BLAS needs a contiguous block.
"""
import contextlib

import torch

from ..backends import get_backend

__all__ = ["Place", "place_of"]

DTYPES = (torch.float32, torch.float64)


class Place:
    """The device of one call.  ``with place.on() as backend:`` makes the device and
    PyTorch's current stream those of CuPy for a CUDA place; ``array`` and ``tensor``
    convert inside that block (DLPack hands the consumer's stream to the producer)."""

    def __init__(self, device):
        self.device = device

    @contextlib.contextmanager
    def on(self):
        if self.device.type == "cpu":
            yield get_backend("numpy")
            return
        import cupy  # place_of checked that it imports
        index = self.device.index if self.device.index is not None \
            else torch.cuda.current_device()
        with cupy.cuda.Device(index):
            # Read at each entry: torch runs a CUDA backward on its own thread and stream.
            current = torch.cuda.current_stream(index)
            if hasattr(cupy.cuda.Stream, "from_external"):  # CuPy >= 14
                stream = cupy.cuda.Stream.from_external(current)
            else:
                stream = cupy.cuda.ExternalStream(current.cuda_stream, index)
            with stream:
                yield get_backend("cupy")

    @staticmethod
    def array(backend, t):
        """The tensor's memory as an array of ``backend`` (no copy)."""
        return None if t is None else backend.xp.from_dlpack(t.detach())

    @staticmethod
    def tensor(a):
        """segnp's result as a tensor (no copy)."""
        return None if a is None else torch.from_dlpack(a)


def place_of(fn, named):
    """The one device of the tensors in ``named`` ({argument name: tensor or None}).

    Each error names the function and the argument: not a tensor, not dense, not
    float32 or float64, on another device than the first tensor, on a CUDA device
    without CuPy, or on a device that segnp has no kernels for."""
    first = device = None
    for name, t in named.items():
        if t is None:
            continue
        if not isinstance(t, torch.Tensor):
            raise TypeError(f"{fn}: {name} must be a torch.Tensor; got {type(t).__name__}")
        if t.layout != torch.strided:
            raise TypeError(f"{fn}: {name} must be a dense (strided) tensor; got layout "
                            f"{t.layout} (call .to_dense() first)")
        if t.dtype not in DTYPES:
            raise TypeError(f"{fn}: {name} must be float32 or float64 (the dtypes of "
                            f"segnp's kernels); got {t.dtype}")
        if device is None:
            first, device = name, t.device
        elif t.device != device:
            raise ValueError(f"{fn}: {name} is on {t.device} but {first} is on {device}; "
                             f"move every tensor to one device")
    if device is None:
        raise TypeError(f"{fn}: expected tensors; got none")
    if device.type == "cuda":
        try:
            import cupy
        except ImportError:
            raise RuntimeError(
                f"{fn}: {first} is on {device}, which needs CuPy: pip install "
                f"segnp[cuda13] (or segnp[cuda12]) to match your CUDA") from None
        del cupy
    elif device.type != "cpu":
        raise ValueError(f"{fn}: {first} is on {device}; segnp's kernels run on the CPU "
                         f"and on CUDA devices only")
    return Place(device)
