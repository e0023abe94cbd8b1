"""Reading and parsing the ``.cu`` sources of this folder, for both runtimes.

:func:`load_source` splices a source's local ``#include`` files into one text (a
complete cache key); :func:`parse_kernels` finds each ``__global__`` kernel's parameter
list, which ``runtime.check_args`` compares every launch against.
"""
import os
import re
from dataclasses import dataclass

import numpy as np

CUDA_DIR = os.path.dirname(os.path.abspath(__file__))

# NVRTC options used at run time; tests/test_nvrtc.py compiles with exactly these.
COMPILE_OPTIONS = ("--std=c++17",)

# C spelling of a parameter's base type -> NumPy dtype.  ``T`` is the template parameter.
_C_TYPES = {
    "float": np.float32, "double": np.float64,
    "int": np.int32, "signed int": np.int32, "int32_t": np.int32,
    "unsigned": np.uint32, "unsigned int": np.uint32, "uint32_t": np.uint32,
    "long long": np.int64, "long long int": np.int64, "int64_t": np.int64,
    "unsigned long long": np.uint64, "unsigned long long int": np.uint64,
    "uint64_t": np.uint64, "size_t": np.uint64,
    "short": np.int16, "int16_t": np.int16,
    "unsigned short": np.uint16, "uint16_t": np.uint16,
    "char": np.int8, "signed char": np.int8, "int8_t": np.int8,
    "unsigned char": np.uint8, "uint8_t": np.uint8,
    "bool": np.bool_,
}

_KERNEL_RE = re.compile(
    r"(?:template\s*<(?P<tparams>[^>]*)>\s*)?(?:extern\s+\"C\"\s+)?__global__\s+"
    r"(?:__launch_bounds__\s*\([^)]*\)\s*)?void\s+(?:__launch_bounds__\s*\([^)]*\)\s*)?"
    r"(?P<name>\w+)\s*\((?P<params>[^)]*)\)\s*\{")
_FUNC_RE = re.compile(r"\b(\w+)\s*\([^;{}]*\)\s*(?:const\s*)?\{")
_NOT_FUNCTIONS = {"if", "for", "while", "switch", "catch", "return", "sizeof"}
# [ \t] rather than \s: the match must not swallow the newline, whose line count the
# #line directive after a spliced file relies on.
_INCLUDE_RE = re.compile(r'^[ \t]*#[ \t]*include[ \t]*"([^"]+)"[ \t]*$', re.M)


@dataclass(frozen=True)
class Param:
    name: str
    ctype: str        # base type as written, e.g. 'T', 'int', 'signed char'
    pointer: bool
    const: bool       # pointee is const (only meaningful for pointers)


@dataclass(frozen=True)
class KernelSig:
    name: str
    tparam: str | None          # the template's typename, None for a plain kernel
    params: tuple
    syncs: bool                 # calls __syncthreads (directly or through a callee)

    def name_expression(self, dtype):
        if self.tparam is None:
            return self.name
        return f"{self.name}<{c_float_type(dtype)}>"

    def dtype_of(self, p, dtype):
        if p.ctype == self.tparam:
            return np.dtype(dtype)
        return np.dtype(_C_TYPES[p.ctype])


def c_float_type(dtype):
    dtype = np.dtype(dtype)
    if dtype == np.float32:
        return "float"
    if dtype == np.float64:
        return "double"
    raise TypeError(f"CUDA kernels are instantiated for float32 and float64 only; got {dtype}")


def strip_comments(text):
    """Remove // and /* */ comments (string literals in kernels hold no comment marks)."""
    text = re.sub(r"/\*.*?\*/", lambda m: "\n" * m.group(0).count("\n"), text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def source_path(source, source_dir=None):
    if os.path.isabs(source):
        return source
    return os.path.join(source_dir or CUDA_DIR, source)


def load_source(path, defines=None):
    """The text of a .cu file with its local ``#include "..."`` files spliced in (each
    once), preceded by ``defines``.  Splicing makes the text alone a complete cache key.

    ``#line`` directives keep every line at its own file and line number, so that NVRTC,
    g++ and AddressSanitizer report ``masked_conv.cu:120``, not a line of the spliced
    text.  Files are named by their base name: the text (a cache key) is then the same
    wherever the package is installed."""
    seen = set()

    def expand(p):
        p = os.path.abspath(p)
        if p in seen:
            return ""
        seen.add(p)
        with open(p, encoding="utf-8") as f:
            text = f.read()
        base, name = os.path.dirname(p), os.path.basename(p)

        def splice(m):
            inc = os.path.join(base, m.group(1))
            if not os.path.exists(inc):
                raise FileNotFoundError(f"{name}: #include \"{m.group(1)}\" "
                                        f"not found next to it")
            after = text.count("\n", 0, m.end()) + 2  # the line below the #include
            return f"{expand(inc)}\n#line {after} \"{name}\""
        return f"#line 1 \"{name}\"\n" + _INCLUDE_RE.sub(splice, text)

    head = "".join(f"#define {k} {v}\n" for k, v in sorted((defines or {}).items()))
    return head + expand(path)


def _body(text, open_brace):
    """Text between the brace at ``open_brace`` and its partner."""
    depth = 0
    for i in range(open_brace, len(text)):
        if text[i] == "{":
            depth += 1
        elif text[i] == "}":
            depth -= 1
            if depth == 0:
                return text[open_brace + 1:i]
    raise ValueError("unbalanced braces in CUDA source")


def _parse_param(kernel, raw):
    words = re.sub(r"\b(__restrict__|__restrict|restrict|volatile)\b", " ", raw)
    pointer = words.count("*")
    if pointer > 1 or "[" in words or "&" in words:
        raise ValueError(f"kernel {kernel}: parameter {raw.strip()!r} is not a scalar or a "
                         f"plain pointer, which launchers cannot pass")
    words = words.replace("*", " * ").split()
    const = "const" in words[:words.index("*")] if pointer else False
    words = [w for w in words if w not in ("const", "*")]
    if len(words) < 2:
        raise ValueError(f"kernel {kernel}: parameter {raw.strip()!r} needs a name")
    return Param(words[-1], " ".join(words[:-1]), bool(pointer), const)


def parse_kernels(text):
    """``{name: KernelSig}`` for every ``__global__`` function of a source text."""
    # __launch_bounds__(...) looks like a call followed by the kernel's body to _FUNC_RE,
    # which would then file that body under the wrong name.
    text = re.sub(r"__launch_bounds__\s*\([^)]*\)", " ", strip_comments(text))
    funcs = {}
    for m in _FUNC_RE.finditer(text):
        if m.group(1) not in _NOT_FUNCTIONS:
            funcs.setdefault(m.group(1), []).append(_body(text, m.end() - 1))
    syncing = {n for n, bodies in funcs.items() if any("__syncthreads" in b for b in bodies)}
    grew = True
    while grew:  # a function that calls a syncing function syncs too
        grew = False
        for n, bodies in funcs.items():
            if n not in syncing and any(re.search(rf"\b{re.escape(s)}\s*[<(]", b)
                                        for s in syncing for b in bodies):
                syncing.add(n)
                grew = True
    kernels = {}
    for m in _KERNEL_RE.finditer(text):
        name, tparams = m.group("name"), m.group("tparams")
        tparam = None
        if tparams is not None:
            parts = [p.split() for p in tparams.split(",")]
            if len(parts) != 1 or len(parts[0]) != 2 or parts[0][0] not in ("typename", "class"):
                raise ValueError(f"kernel {name}: templates must take one typename (float or "
                                 f"double); got template <{tparams.strip()}>")
            tparam = parts[0][1]
        raw = [p for p in m.group("params").split(",") if p.strip()]
        params = tuple(_parse_param(name, p) for p in raw)
        for p in params:
            if p.ctype != tparam and p.ctype not in _C_TYPES:
                raise ValueError(f"kernel {name}: parameter {p.name} has type {p.ctype!r}, "
                                 f"which has no NumPy equivalent here")
        kernels[name] = KernelSig(name, tparam, params, name in syncing)
    return kernels
