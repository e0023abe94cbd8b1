#!/usr/bin/env bash
# Every GPU check of segnp's CUDA kernels in one command (issue 13); under 10 minutes
# on one GPU.  Writes a report file and exits non-zero if any step failed.
#
#   bash benchmarks/gpu_verify.sh [--emulator] [--report FILE]
#
# Steps: 1 versions; 2 pytest -m gpu with SEGNP_REQUIRE_GPU=1; 3 NaN-prefilled parity
# on odd shapes, float32 and float64; 4 bitwise identity across launch shapes and runs;
# 5 a >2^31-element batch; 6 compute-sanitizer racecheck, memcheck, initcheck; 7 timings,
# with TF32 off and on.  --emulator runs everything that needs no device on the CUDA
# emulator (the same .cu files on the CPU); the other steps say "skipped: no GPU".
set -uo pipefail
cd "$(dirname "$0")/.."

MODE=gpu
REPORT=gpu_verify_report.md
while [ $# -gt 0 ]; do
    case "$1" in
        --emulator) MODE=emulator ;;
        --report) REPORT="$2"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        *) echo "gpu_verify.sh: unknown argument $1 (expected --emulator, --report FILE)" >&2
           exit 2 ;;
    esac
    shift
done

PY=${PYTHON:-python3}
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
EMU=()
SCALE=1  # the emulator is a CPU, maybe a busy one: its steps get 10x the time caps
[ "$MODE" = emulator ] && EMU=(--emulator) && SCALE=10
TMP=$(mktemp -d)
trap 'rm -rf "$TMP"' EXIT
FAILED=()
START=$(date +%s)

out() { echo "$@" | tee -a "$TMP/report"; }

# step NUMBER TITLE LIMIT_SECONDS COMMAND...: run, quote its output, record the result.
step() {
    local n=$1 title=$2 limit=$3
    shift 3
    out ""
    out "## Step $n: $title"
    out ""
    local t0=$(date +%s)
    limit=$(( limit * SCALE ))
    timeout "$limit" "$@" > "$TMP/step" 2>&1
    local rc=$?
    sed 's/^/    /' "$TMP/step" | tail -n 60 | tee -a "$TMP/report"
    local secs=$(( $(date +%s) - t0 ))
    if [ $rc -eq 0 ]; then
        out "result: ok (${secs} s)"
    else
        [ $rc -eq 124 ] && out "result: FAIL (timed out after ${limit} s)" \
                         || out "result: FAIL (exit status $rc, ${secs} s)"
        FAILED+=("$n")
    fi
}

skip() {
    out ""
    out "## Step $1: $2"
    out ""
    out "skipped: $3"
}

out "# segnp GPU verification ($MODE mode)"
out ""
out "date: $(date -u '+%Y-%m-%d %H:%M UTC'); commit: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"

if [ "$MODE" = gpu ] && command -v nvidia-smi > /dev/null; then
    step 1 "device, driver, CuPy" 60 bash -c \
        "nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader \
         && $PY benchmarks/gpu_verify.py versions"
else
    step 1 "device, driver, CuPy" 60 "$PY" benchmarks/gpu_verify.py versions "${EMU[@]}"
fi

if [ "$MODE" = gpu ]; then
    step 2 "pytest -m gpu with SEGNP_REQUIRE_GPU=1" 240 \
        env SEGNP_REQUIRE_GPU=1 "$PY" -m pytest -q -m gpu -p no:cacheprovider tests
else
    skip 2 "pytest -m gpu with SEGNP_REQUIRE_GPU=1" "no GPU"
fi

step 3 "NaN-prefilled parity on odd shapes, float32 and float64" 180 \
    "$PY" benchmarks/gpu_verify.py parity "${EMU[@]}"
step 4 "bitwise identity across launch shapes and runs" 180 \
    "$PY" benchmarks/gpu_verify.py identity "${EMU[@]}"

if [ "$MODE" = gpu ]; then
    step 5 "a batch of more than 2^31 elements: last image vs alone" 120 \
        "$PY" benchmarks/gpu_verify.py large
else
    skip 5 "a batch of more than 2^31 elements: last image vs alone" \
        "no GPU (tests/test_cuda_limits.py checks the 64-bit offsets on the emulator)"
fi

if [ "$MODE" = gpu ] && command -v compute-sanitizer > /dev/null; then
    for tool in racecheck memcheck initcheck; do
        step "6 ($tool)" "compute-sanitizer --tool $tool on a small run" 120 \
            compute-sanitizer --tool "$tool" --error-exitcode 1 \
            "$PY" benchmarks/gpu_verify.py small
    done
elif [ "$MODE" = gpu ]; then
    skip 6 "compute-sanitizer" "compute-sanitizer is not on PATH"
else
    LIBASAN=$(${CXX:-g++} -print-file-name=libasan.so 2>/dev/null)
    if [ -f "$LIBASAN" ]; then
        step 6 "compute-sanitizer (skipped: no GPU); the emulator's AddressSanitizer instead" \
            300 env SEGNP_EMULATOR_SANITIZE=address LD_PRELOAD="$LIBASAN" \
            ASAN_OPTIONS=detect_leaks=0 "$PY" benchmarks/gpu_verify.py small --emulator
    else
        skip 6 "compute-sanitizer" "no GPU (and no libasan for the emulator)"
    fi
fi

if [ "$MODE" = gpu ]; then
    step "7 (TF32 off)" "timings" 120 env CUPY_TF32=0 SEGNP_TF32=0 \
        "$PY" benchmarks/gpu_verify.py timing
    step "7 (TF32 on)" "timings" 120 env CUPY_TF32=1 SEGNP_TF32=1 \
        "$PY" benchmarks/gpu_verify.py timing
else
    step 7 "timings (emulator, CPU milliseconds; TF32: skipped: no GPU)" 300 \
        "$PY" benchmarks/gpu_verify.py timing --emulator --repeat 3
fi

out ""
if [ ${#FAILED[@]} -eq 0 ]; then
    out "all steps passed or were skipped ($(( $(date +%s) - START )) s)"
else
    out "FAILED steps: ${FAILED[*]} ($(( $(date +%s) - START )) s)"
fi
cp "$TMP/report" "$REPORT.tmp" && mv "$REPORT.tmp" "$REPORT"
echo "report: $REPORT"
[ ${#FAILED[@]} -eq 0 ]
