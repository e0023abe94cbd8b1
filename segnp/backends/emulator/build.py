"""Build a .cu source into a shared library for the CPU emulator, cached on disk.

One translation unit per source text: ``prelude.h``, the source, then one
``extern "C"`` entry point per kernel instantiation (``name<float>`` and
``name<double>`` for a template, ``name`` otherwise).  The library is cached under
``$SEGNP_CACHE_DIR`` (default ``~/.cache/segnp``) in ``emulator/<sha256>.so``, keyed by
the whole translation unit, the compiler flags and the compiler version, so editing a
kernel or the prelude rebuilds it and nothing else does.

``SEGNP_EMULATOR_SANITIZE=address`` builds with AddressSanitizer (a separate cache
entry); the process must then run with libasan preloaded (see tests/test_emulator.py).
The prelude announces every fiber switch to ASan, so kernels with ``__syncthreads``
(run as fibers) are checked too.
"""
import ctypes
import functools
import hashlib
import os
import re
import shutil
import subprocess

import numpy as np

from ...atomic import atomic_path

PRELUDE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "prelude.h")
# Hidden visibility: g++ exports a template kernel's function-level statics (our
# ``__shared__`` arrays) as STB_GNU_UNIQUE symbols, which the dynamic linker binds to
# one copy per process even across RTLD_LOCAL libraries; two builds of one kernel with
# different tile shapes would then share the first one's (possibly smaller) array.
# Hidden symbols are bound inside their own library, so each build keeps its own.
FLAGS = ("-x", "c++", "-std=c++17", "-O2", "-shared", "-fPIC", "-fvisibility=hidden")
SANITIZE_FLAGS = {"address": ("-fsanitize=address", "-fno-omit-frame-pointer", "-g")}

# ``extern __shared__ T name[];`` (dynamic shared memory) cannot be a static; it becomes
# a pointer into the buffer the launch allocates for ``shared_mem`` bytes.
_DYNAMIC_SHARED = re.compile(
    r"extern\s+__shared__\s+(?:__align__\s*\(\s*\d+\s*\)\s*)?([\w\s]+?)\s*"
    r"(?:__align__\s*\(\s*\d+\s*\)\s*)?(\w+)\s*\[\s*\]\s*;")

# In-process cache: library key -> Library.  Several runtimes share it.
_LIBRARIES = {}


def cache_dir():
    root = os.environ.get("SEGNP_CACHE_DIR") or os.path.join(
        os.path.expanduser("~"), ".cache", "segnp")
    return os.path.join(root, "emulator")


def compiler():
    cxx = os.environ.get("CXX") or "g++"
    if shutil.which(cxx) is None:
        raise RuntimeError(f"the CUDA emulator compiles kernels with a C++ compiler; "
                           f"{cxx!r} was not found (install g++ or set CXX)")
    return cxx


@functools.lru_cache(maxsize=None)
def _compiler_id(cxx):
    out = subprocess.run([cxx, "--version"], capture_output=True, text=True)
    return out.stdout.splitlines()[0] if out.stdout else cxx


def _flags():
    mode = os.environ.get("SEGNP_EMULATOR_SANITIZE", "").strip().lower()
    if mode and mode not in SANITIZE_FLAGS:
        raise ValueError(f"SEGNP_EMULATOR_SANITIZE: expected one of {sorted(SANITIZE_FLAGS)}; "
                         f"got {mode!r}")
    return FLAGS + SANITIZE_FLAGS.get(mode, ())


def instantiations(sigs):
    """[(kernel name, dtype or None)] in a fixed order: the entry points of a library."""
    out = []
    for name in sorted(sigs):
        if sigs[name].tparam is None:
            out.append((name, None))
        else:
            out += [(name, np.dtype(np.float32)), (name, np.dtype(np.float64))]
    return out


def translation_unit(text, sigs, filename="kernel.cu"):
    """The C++ text compiled for a source, and the entry symbol of each instantiation."""
    with open(PRELUDE, encoding="utf-8") as f:
        prelude = f.read()
    body = _DYNAMIC_SHARED.sub(
        lambda m: f"{m.group(1)}* {m.group(2)} = reinterpret_cast<{m.group(1)}*>"
                  f"(segemu::dynamic_shared);", text)
    lines = [prelude, f"#line 1 \"{filename}\"", body, ""]
    symbols = {}
    for i, (name, dtype) in enumerate(instantiations(sigs)):
        sig = sigs[name]
        expr = sig.name if dtype is None else sig.name_expression(dtype)
        sym = f"segemu_entry_{i}"
        symbols[(name, None if dtype is None else dtype.str)] = sym
        # segemu_-prefixed parameter names cannot collide with a kernel's name.
        lines.append(
            f"extern \"C\" SEGEMU_EXPORT int {sym}(const unsigned* segemu_grid, "
            f"const unsigned* segemu_block, size_t segemu_shared, void** segemu_args)\n"
            f"{{ return segemu::launch(&segemu::thunk<&{expr}>, segemu_args, segemu_grid, "
            f"segemu_block, segemu_shared, {int(sig.syncs)}); }}")
    return "\n".join(lines) + "\n", symbols


def build(text, sigs, filename="kernel.cu"):
    """Compile (or find in the cache) the library for ``text``.

    Returns ``(path, symbols, compiled)``; ``compiled`` is False on a cache hit.
    """
    cxx = compiler()
    flags = _flags()
    unit, symbols = translation_unit(text, sigs, filename)
    key = hashlib.sha256("\0".join((unit, " ".join(flags), _compiler_id(cxx)))
                         .encode()).hexdigest()
    folder = cache_dir()
    path = os.path.join(folder, key + ".so")
    if os.path.exists(path):
        return path, symbols, False
    os.makedirs(folder, exist_ok=True)
    cpp = os.path.join(folder, key + ".cpp")
    # Temporary names end in .tmp; concurrent builders of one key write identical files.
    with atomic_path(cpp, keep_ext=False) as tmp:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(unit)
    with atomic_path(path, keep_ext=False) as tmp:
        out = subprocess.run([cxx, *flags, cpp, "-o", tmp], capture_output=True, text=True)
        if out.returncode != 0:
            raise RuntimeError(f"CUDA emulator: {cxx} failed on {cpp}:\n{out.stderr[-6000:]}")
    return path, symbols, True


class Library:
    """A loaded emulator library: ``entry(name, dtype)`` is a ctypes function
    ``(grid uint[3], block uint[3], shared bytes, void** args) -> int status``."""

    def __init__(self, path, symbols):
        self.path = path
        self._lib = ctypes.CDLL(path)
        self._lib.segemu_error.restype = ctypes.c_char_p
        self.configure = self._lib.segemu_configure
        self.configure.restype = None
        self.configure.argtypes = [ctypes.c_int, ctypes.c_ulonglong, ctypes.c_ulonglong]
        self._symbols = symbols
        self._entries = {}

    def entry(self, name, dtype):
        key = (name, dtype)
        fn = self._entries.get(key)
        if fn is None:
            fn = getattr(self._lib, self._symbols[key])
            fn.restype = ctypes.c_int
            fn.argtypes = [ctypes.POINTER(ctypes.c_uint), ctypes.POINTER(ctypes.c_uint),
                           ctypes.c_size_t, ctypes.POINTER(ctypes.c_void_p)]
            self._entries[key] = fn
        return fn

    def error(self):
        return self._lib.segemu_error().decode(errors="replace")


def load(text, sigs, filename="kernel.cu"):
    """The :class:`Library` for a source text, built at most once per process;
    ``filename`` is the name compiler errors give the source."""
    path, symbols, _ = build(text, sigs, filename)
    lib = _LIBRARIES.get(path)
    if lib is None:
        lib = _LIBRARIES[path] = Library(path, symbols)
    return lib
