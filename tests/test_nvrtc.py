"""Every .cu file of segnp/backends/cuda compiles with NVRTC for sm_75, sm_80 and sm_90,
with warnings as errors, for every kernel instantiated in float and double.

masked_conv.cu is compiled once per tile shape of the launchers, with their #defines.
Each kernel must also fit the largest block it may be launched with (registers x
threads within the 64K registers of a block, static shared memory within 48 KiB).

This needs no GPU: it drives NVRTC through CuPy's low-level binding (``RawModule``
would need a device).  The options are the run-time ones, ``COMPILE_OPTIONS`` plus what
``cupy.RawModule`` adds on its own (``-ftz=true``, ``--device-as-default-execution-space``;
its ``--pch`` only speeds compilation up and is left out).

Register spills: compiling to a real architecture (``-arch=sm_XX``) makes NVRTC run
ptxas, and ``-Xptxas=-v`` puts ptxas's per-kernel report (registers, spill stores and
loads, shared memory) into the program log.  Each test prints that table (``pytest -s``
shows it) and raises a ``SpillWarning`` (listed in pytest's warnings summary) for every
kernel that spills; spills are reported, not failed, since a double instantiation on an
old architecture may spill a little by design.

Skipped, with the reason, when cupy or the NVRTC library (``nvidia-cuda-nvrtc``, the
``test`` extra) is not installed.
"""
import os
import re
import warnings

import numpy as np
import pytest

from segnp.backends.cuda import masked_conv as mc
from segnp.backends.cuda.source import COMPILE_OPTIONS, CUDA_DIR, load_source, parse_kernels

ARCHS = (75, 80, 90)
SOURCES = sorted(f for f in os.listdir(CUDA_DIR) if f.endswith(".cu"))
# The most threads per block a launch may use: ``Runtime`` allows 1024 for the
# grid-stride kernels, and masked_conv.cu runs with its tile's thread count.
MAX_THREADS = 1024
# (source, label, #defines, most threads per block): masked_conv.cu once per tile shape
# of the launchers, built with the #defines they pass at run time.
BUILDS = [(src, src, None, MAX_THREADS) for src in SOURCES if src != "masked_conv.cu"]
BUILDS += [("masked_conv.cu", f"masked_conv.cu[{tile}]") + mc.tile_defines(tile)
           for tile in sorted(mc.TILES)]
REGS_PER_SM = 64 * 1024  # sm_75 to sm_90: also the most one block may hold
# Added by cupy.RawModule at run time (cupy/cuda/compiler.py).
RAWMODULE_OPTIONS = ("-ftz=true", "--device-as-default-execution-space")
SHARED_LIMIT = 48 * 1024  # static shared memory per block without opt-in


class SpillWarning(UserWarning):
    pass


def _nvrtc():
    cupy = pytest.importorskip("cupy", reason="cupy (the 'test' extra) is not installed")
    try:
        nvrtc = cupy.cuda.nvrtc
        nvrtc.getVersion()
    except Exception as e:  # the binding imports, but libnvrtc may be missing
        pytest.skip(f"NVRTC is not usable (install nvidia-cuda-nvrtc): {e}")
    return nvrtc


_ENTRY = re.compile(r"Compiling entry function '(\w+)' for 'sm_(\d+)'")
_SPILL = re.compile(r"(\d+) bytes stack frame, (\d+) bytes spill stores, (\d+) bytes spill loads")
_USED = re.compile(r"Used (\d+) registers.*?(?:(\d+) bytes smem)?,")


def ptxas_report(log):
    """{mangled name: dict(registers, stack, spill_stores, spill_loads, smem)} from the
    ``-Xptxas=-v`` lines of an NVRTC log."""
    out, current = {}, None
    for line in log.splitlines():
        m = _ENTRY.search(line)
        if m:
            current = out.setdefault(m.group(1), {})
            continue
        if current is None:
            continue
        m = _SPILL.search(line)
        if m:
            current.update(stack=int(m.group(1)), spill_stores=int(m.group(2)),
                           spill_loads=int(m.group(3)))
        m = re.search(r"Used (\d+) registers", line)
        if m:
            current["registers"] = int(m.group(1))
            s = re.search(r"(\d+) bytes smem", line)
            current["smem"] = int(s.group(1)) if s else 0
    return out


def test_ptxas_report_parser():
    log = ("ptxas info    : Compiling entry function '_Z1kIfEvPT_i' for 'sm_80'\n"
           "ptxas info    : Function properties for _Z1kIfEvPT_i\n"
           "ptxas         .     16 bytes stack frame, 8 bytes spill stores, 4 bytes spill loads\n"
           "ptxas info    : Used 40 registers, used 1 barriers, 4000 bytes smem, 364 bytes cmem[0]\n"
           "ptxas info    : Compiling entry function '_Z1kIdEvPT_i' for 'sm_80'\n"
           "ptxas         .     0 bytes stack frame, 0 bytes spill stores, 0 bytes spill loads\n"
           "ptxas info    : Used 12 registers, 364 bytes cmem[0]\n")
    assert ptxas_report(log) == {
        "_Z1kIfEvPT_i": dict(stack=16, spill_stores=8, spill_loads=4, registers=40, smem=4000),
        "_Z1kIdEvPT_i": dict(stack=0, spill_stores=0, spill_loads=0, registers=12, smem=0)}


_ENTRY_PTX = re.compile(r"\.entry\s+(\w+)\s*\([^)]*\)\s*((?:\.\w+[^\n{]*\n\s*)*)\{")


def ptx_max_threads(ptx):
    """{mangled name: threads of its .maxntid (None without one)} from PTX text."""
    out = {}
    for m in _ENTRY_PTX.finditer(ptx):
        n = re.search(r"\.maxntid\s+(\d+)\s*,\s*(\d+)\s*,\s*(\d+)", m.group(2))
        out[m.group(1)] = (int(n.group(1)) * int(n.group(2)) * int(n.group(3))) if n else None
    return out


def test_ptx_max_threads_parser():
    ptx = (".visible .entry _Z1aPf(\n\t.param .u64 _Z1aPf_param_0\n)\n.maxntid 1024, 1, 1\n{\n}\n"
           ".visible .entry _Z1bPf(\n\t.param .u64 _Z1bPf_param_0\n)\n{\n}\n"
           ".visible .entry _Z1cPf(\n\t.param .u64 p\n)\n.maxntid 16, 8, 1\n.minnctapersm 2\n{\n}\n")
    assert ptx_max_threads(ptx) == {"_Z1aPf": 1024, "_Z1bPf": None, "_Z1cPf": 128}


def block_registers(regs, threads):
    """Registers a block of ``threads`` threads holds: allocated per warp, in units of 256."""
    return -(-regs * 32 // 256) * 256 * -(-threads // 32)


def test_block_registers():
    assert block_registers(64, 1024) == REGS_PER_SM
    assert block_registers(63, 1024) == REGS_PER_SM  # rounded up to 64 per thread
    assert block_registers(65, 1024) > REGS_PER_SM
    assert block_registers(255, 256) <= REGS_PER_SM


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("source,label,defines,threads", BUILDS, ids=[b[1] for b in BUILDS])
def test_source_compiles_with_nvrtc(source, label, defines, threads, arch):
    nvrtc = _nvrtc()
    text = load_source(os.path.join(CUDA_DIR, source), defines)
    sigs = parse_kernels(text)
    assert sigs, f"{source} defines no __global__ kernel"
    exprs = sorted({s.name_expression(dt) for s in sigs.values()
                    for dt in (np.float32, np.float64)})
    options = list(COMPILE_OPTIONS + RAWMODULE_OPTIONS) + [
        f"-arch=sm_{arch}", "-Werror=all-warnings", "-Xptxas=-v"]
    prog = nvrtc.createProgram(text, source, [], [])
    try:
        for e in exprs:
            nvrtc.addNameExpression(prog, e)
        try:
            nvrtc.compileProgram(prog, options)
        except nvrtc.NVRTCError as e:
            pytest.fail(f"{source} for sm_{arch}: {e}\n{nvrtc.getProgramLog(prog)}")
        log = nvrtc.getProgramLog(prog)
        lowered = {e: nvrtc.getLoweredName(prog, e) for e in exprs}
        ptx = nvrtc.getPTX(prog).decode(errors="replace")
    finally:
        nvrtc.destroyProgram(prog)

    # __launch_bounds__ on every kernel: the compiler then fits the largest block the
    # launchers use, instead of a launch failing on a future NVRTC.
    bounds = ptx_max_threads(ptx)
    for e, low in lowered.items():
        assert bounds.get(low) == threads, (
            f"{e}: PTX .maxntid gives {bounds.get(low)} threads, expected "
            f"__launch_bounds__ of {threads}")

    assert not re.search(r"\bwarning\b", log, re.I), log
    report = ptxas_report(log)
    missing = [e for e, low in lowered.items() if low not in report]
    assert not missing, f"ptxas reported nothing for {missing}:\n{log}"

    print(f"\n{label} sm_{arch}: registers, spill stores/loads (bytes), stack, smem "
          f"(blocks of up to {threads} threads)")
    for e in exprs:
        r = report[lowered[e]]
        print(f"  {e:40s} {r['registers']:4d} regs  spill {r['spill_stores']}/"
              f"{r['spill_loads']}  stack {r['stack']}  smem {r['smem']}")
        if r["spill_stores"] or r["spill_loads"]:
            warnings.warn(SpillWarning(
                f"{e} on sm_{arch} spills {r['spill_stores']} bytes (stores) / "
                f"{r['spill_loads']} bytes (loads) to local memory"))
        assert r["smem"] <= SHARED_LIMIT, f"{e} needs {r['smem']} bytes of shared memory"
        # More would make a launch fail with "too many resources requested".
        assert block_registers(r["registers"], threads) <= REGS_PER_SM, (
            f"{e} on sm_{arch}: {r['registers']} registers x {threads} threads exceed "
            f"the {REGS_PER_SM} registers of a block")


def test_nvrtc_reports_errors_at_the_real_file_and_line(tmp_path):
    """load_source's #line directives: an error after the spliced window.cuh (77 lines)
    is reported at its own line of the .cu file."""
    nvrtc = _nvrtc()
    (tmp_path / "window.cuh").write_text(open(os.path.join(CUDA_DIR, "window.cuh")).read())
    (tmp_path / "bad.cu").write_text('#include "window.cuh"\n\n'
                                     "__global__ void k(float* y)\n{\n"
                                     "    y[0] = not_declared_anywhere;\n}\n")
    text = load_source(str(tmp_path / "bad.cu"))
    prog = nvrtc.createProgram(text, "bad.cu", [], [])
    try:
        with pytest.raises(nvrtc.NVRTCError):
            nvrtc.compileProgram(prog, list(COMPILE_OPTIONS))
        log = nvrtc.getProgramLog(prog)
    finally:
        nvrtc.destroyProgram(prog)
    assert re.search(r"bad\.cu\(5\): error: identifier \"not_declared_anywhere\"", log), log
