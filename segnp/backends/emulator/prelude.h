// The CUDA emulator's prelude: enough of CUDA C++ in plain C++ for segnp's kernels to
// compile with g++ and run on the CPU.  segnp/backends/emulator/build.py puts this
// header, then a .cu file, then generated entry points into one translation unit.
//
// Model.  One OS thread runs a launch: blocks one after another, and within a block
// either
//   - a plain loop over the threads, for kernels that never call __syncthreads, or
//   - one fiber (ucontext) per thread.  Each fiber runs until it reaches a barrier;
//     when every thread of the block is waiting at it, all resume.  This is exactly
//     the guarantee __syncthreads gives, so a kernel that forgets one reads stale
//     shared memory here as it could on a GPU.
// Because threads never run at the same time, atomics are plain read-modify-writes,
// and __shared__ variables can be function-level statics: a block starts only after
// the previous one finished, and static storage is the same for all fibers of the
// block.  (They are not thread_local: the initial-exec TLS model cannot hold large
// arrays in a dlopen'ed library, and nothing here runs on a second OS thread.)
//
// What it cannot see: races between threads (they never overlap) and warp behaviour;
// warp intrinsics are deliberately left undefined so that using one fails to compile.
// To expose a missing barrier whichever way it points, threads (and blocks) can run in
// descending order between barriers (segemu_configure): a thread that reads a
// lower-numbered thread's store without a __syncthreads sees it in ascending order
// and misses it in descending order, and the other way round for a higher-numbered one.
//
// Under AddressSanitizer (SEGNP_EMULATOR_SANITIZE=address) each switch between the
// scheduler and a fiber is announced with __sanitizer_{start,finish}_switch_fiber, so
// that ASan checks fiber stacks as stacks instead of misreporting them.
#include <math.h>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <csetjmp>
#include <type_traits>
#include <utility>
#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>
#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define SEGEMU_ASAN 1
#else
#define SEGEMU_ASAN 0
#endif

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __noinline__ __attribute__((noinline))
#define __launch_bounds__(...)
#define __align__(n) __attribute__((aligned(n)))
#define __shared__ static
#define __constant__ static

struct uint3 { unsigned int x, y, z; };
struct dim3 {
    unsigned int x, y, z;
    dim3(unsigned int x_ = 1, unsigned int y_ = 1, unsigned int z_ = 1) : x(x_), y(y_), z(z_) {}
};

namespace segemu {
static uint3 thread_idx, block_idx;
static dim3 block_dim, grid_dim;
}
static const uint3& threadIdx = segemu::thread_idx;
static const uint3& blockIdx = segemu::block_idx;
static const dim3& blockDim = segemu::block_dim;
static const dim3& gridDim = segemu::grid_dim;
static const int warpSize = 32;

// ---------------------------------------------------------------- math
// The fast intrinsics are macros: glibc already declares some of these names.
// CUDA's min/max are overloaded for every arithmetic type and mix them like C.
template <class A, class B>
static inline typename std::common_type<A, B>::type min(A a, B b)
{ typedef typename std::common_type<A, B>::type R; return R(b) < R(a) ? R(b) : R(a); }
template <class A, class B>
static inline typename std::common_type<A, B>::type max(A a, B b)
{ typedef typename std::common_type<A, B>::type R; return R(a) < R(b) ? R(b) : R(a); }

static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
static inline double rsqrt(double x) { return 1.0 / sqrt(x); }
static inline float rcbrtf(float x) { return 1.0f / cbrtf(x); }
static inline double rcbrt(double x) { return 1.0 / cbrt(x); }
#define __expf(x) expf((x))
#define __exp10f(x) powf(10.0f, (x))
#define __logf(x) logf((x))
#define __log2f(x) log2f((x))
#define __log10f(x) log10f((x))
#define __powf(x, y) powf((x), (y))
#define __sinf(x) sinf((x))
#define __cosf(x) cosf((x))
#define __tanf(x) tanf((x))
static inline float __fdividef(float a, float b) { return a / b; }
static inline float __frcp_rn(float x) { return 1.0f / x; }
static inline double __drcp_rn(double x) { return 1.0 / x; }
static inline float __fsqrt_rn(float x) { return sqrtf(x); }
static inline double __dsqrt_rn(double x) { return sqrt(x); }
static inline float __fadd_rn(float a, float b) { return a + b; }
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline double __dadd_rn(double a, double b) { return a + b; }
static inline double __dmul_rn(double a, double b) { return a * b; }
static inline float __fmaf_rn(float a, float b, float c) { return fmaf(a, b, c); }
static inline double __fma_rn(double a, double b, double c) { return fma(a, b, c); }
static inline float __saturatef(float x) { return x < 0.0f ? 0.0f : (x > 1.0f ? 1.0f : x); }
static inline int __float2int_rn(float x) { return (int)nearbyintf(x); }
static inline int __float2int_rz(float x) { return (int)x; }
static inline int __float2int_rd(float x) { return (int)floorf(x); }
static inline int __float2int_ru(float x) { return (int)ceilf(x); }
static inline float __int2float_rn(int x) { return (float)x; }
static inline int __double2int_rn(double x) { return (int)nearbyint(x); }
static inline int __float_as_int(float x) { int i; memcpy(&i, &x, 4); return i; }
static inline float __int_as_float(int i) { float x; memcpy(&x, &i, 4); return x; }
static inline unsigned int __float_as_uint(float x) { unsigned int i; memcpy(&i, &x, 4); return i; }
static inline float __uint_as_float(unsigned int i) { float x; memcpy(&x, &i, 4); return x; }
static inline long long __double_as_longlong(double x) { long long i; memcpy(&i, &x, 8); return i; }
static inline double __longlong_as_double(long long i) { double x; memcpy(&x, &i, 8); return x; }
static inline int __clz(int x) { return x == 0 ? 32 : __builtin_clz((unsigned int)x); }
static inline int __clzll(long long x) { return x == 0 ? 64 : __builtin_clzll((unsigned long long)x); }
static inline int __popc(unsigned int x) { return __builtin_popcount(x); }
static inline int __popcll(unsigned long long x) { return __builtin_popcountll(x); }
static inline int __ffs(int x) { return __builtin_ffs(x); }
static inline int __ffsll(long long x) { return __builtin_ffsll(x); }
static inline int __mul24(int a, int b) { return a * b; }
static inline unsigned int __umul24(unsigned int a, unsigned int b) { return a * b; }
template <class T> static inline T __ldg(const T* p) { return *p; }

// ---------------------------------------------------------------- atomics
// Threads never overlap, so a plain read-modify-write is atomic.  (GCC's __atomic
// builtins would not do anyway: there is no atomic max.)
template <class T, class U> static inline T atomicAdd(T* p, U v) { T o = *p; *p = T(o + v); return o; }
template <class T, class U> static inline T atomicSub(T* p, U v) { T o = *p; *p = T(o - v); return o; }
template <class T, class U> static inline T atomicExch(T* p, U v) { T o = *p; *p = T(v); return o; }
template <class T, class U> static inline T atomicMax(T* p, U v) { T o = *p; if (o < T(v)) *p = T(v); return o; }
template <class T, class U> static inline T atomicMin(T* p, U v) { T o = *p; if (T(v) < o) *p = T(v); return o; }
template <class T, class U> static inline T atomicAnd(T* p, U v) { T o = *p; *p = T(o & v); return o; }
template <class T, class U> static inline T atomicOr(T* p, U v) { T o = *p; *p = T(o | v); return o; }
template <class T, class U> static inline T atomicXor(T* p, U v) { T o = *p; *p = T(o ^ v); return o; }
template <class T, class U, class V> static inline T atomicCAS(T* p, U cmp, V v)
{ T o = *p; if (o == T(cmp)) *p = T(v); return o; }
static inline void __threadfence() {}
static inline void __threadfence_block() {}

// ---------------------------------------------------------------- scheduler
namespace segemu {

typedef void (*Thunk)(void**);
enum State { RUNNING, AT_BARRIER, DONE, FAILED };
struct Fiber { ucontext_t ctx; State state; int line; uint3 tid; void* fake_stack; };

static const size_t kStack = 256 * 1024;  // reserved, not committed: pages fault in on use
static char error_text[512];
static bool fiber_mode = false;
static jmp_buf loop_escape;
static ucontext_t scheduler;
static Fiber* current = nullptr;
static Fiber* fibers = nullptr;
static char* stacks = nullptr;
static size_t n_stacks = 0;
static Thunk job_thunk;
static void** job_args;
static unsigned char* dynamic_shared = nullptr;
// Set by segemu_configure before a launch: the order of threads and blocks, and the
// range [first_block, end_block) of linear block indices to run (a partial launch, for
// tests of tensors too large to compute whole: the other blocks' outputs are not written).
static bool descending = false;
static unsigned long long first_block = 0, end_block = ~0ull;

// ASan's view of the stack switches: the scheduler's stack, and the fake stack of the
// context being left (see sanitizer/common_interface_defs.h).
static const void* sched_stack_bottom = nullptr;
static size_t sched_stack_size = 0;
static void* sched_fake_stack = nullptr;

static inline void to_fiber(Fiber& f)
{
#if SEGEMU_ASAN
    __sanitizer_start_switch_fiber(&sched_fake_stack, f.ctx.uc_stack.ss_sp,
                                   f.ctx.uc_stack.ss_size);
#endif
    swapcontext(&scheduler, &f.ctx);
#if SEGEMU_ASAN
    __sanitizer_finish_switch_fiber(sched_fake_stack, nullptr, nullptr);
#endif
}

// In a fiber: announce the switch back to the scheduler; ``ending`` when the fiber's
// stack is done with (it returns or fails and is never resumed).
static inline void leaving_fiber(bool ending)
{
#if SEGEMU_ASAN
    __sanitizer_start_switch_fiber(ending ? nullptr : &current->fake_stack, sched_stack_bottom,
                                   sched_stack_size);
#else
    (void)ending;
#endif
}

static inline void entered_fiber()
{
#if SEGEMU_ASAN
    __sanitizer_finish_switch_fiber(current->fake_stack, &sched_stack_bottom, &sched_stack_size);
#endif
}

// Stop the launch: the loop runner longjmps out of the kernel (same stack, upward); a
// fiber parks itself as FAILED and the scheduler abandons the block.
[[noreturn]] static void fail(const char* what, int line)
{
    if (!error_text[0])
        snprintf(error_text, sizeof error_text, "%s (line %d, block (%u, %u, %u), "
                 "thread (%u, %u, %u))", what, line, block_idx.x, block_idx.y, block_idx.z,
                 thread_idx.x, thread_idx.y, thread_idx.z);
    if (fiber_mode) {
        current->state = FAILED;
        leaving_fiber(true);
        swapcontext(&current->ctx, &scheduler);
    } else {
        longjmp(loop_escape, 1);
    }
    abort();  // a FAILED fiber is never resumed
}

static void syncthreads(int line)
{
    if (!fiber_mode)
        fail("__syncthreads() in a kernel the emulator runs without fibers: the .cu "
             "parser found no __syncthreads in it or its callees", line);
    current->state = AT_BARRIER;
    current->line = line;
    leaving_fiber(false);
    swapcontext(&current->ctx, &scheduler);
    entered_fiber();
}

static void fiber_main()
{
    current->fake_stack = nullptr;
    entered_fiber();
    job_thunk(job_args);
    current->state = DONE;  // returning resumes uc_link, the scheduler
    leaving_fiber(true);
}

static bool ensure_stacks(size_t n)
{
    if (n <= n_stacks) return true;
    if (stacks) munmap(stacks, n_stacks * kStack);
    free(fibers);
    stacks = (char*)mmap(nullptr, n * kStack, PROT_READ | PROT_WRITE,
                         MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    fibers = (Fiber*)calloc(n, sizeof(Fiber));
    if (stacks == MAP_FAILED || !fibers) { stacks = nullptr; n_stacks = 0; return false; }
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < n; ++i)  // a guard page under each stack turns overflow into a crash
        mprotect(stacks + i * kStack, page, PROT_NONE);
    n_stacks = n;
    return true;
}

static bool run_block_loop()
{
    if (setjmp(loop_escape)) return false;
    const size_t n = (size_t)block_dim.x * block_dim.y * block_dim.z;
    for (size_t j = 0; j < n; ++j) {
        const size_t i = descending ? n - 1 - j : j;
        thread_idx = uint3{unsigned(i % block_dim.x), unsigned(i / block_dim.x % block_dim.y),
                           unsigned(i / (block_dim.x * block_dim.y))};
        job_thunk(job_args);
    }
    return true;
}

static bool run_block_fibers(size_t n)
{
    const size_t page = (size_t)sysconf(_SC_PAGESIZE);
    for (size_t i = 0; i < n; ++i) {
        Fiber& f = fibers[i];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = stacks + i * kStack + page;
        f.ctx.uc_stack.ss_size = kStack - page;
        f.ctx.uc_link = &scheduler;
        makecontext(&f.ctx, fiber_main, 0);
        f.state = RUNNING;
        f.tid = uint3{unsigned(i % block_dim.x), unsigned(i / block_dim.x % block_dim.y),
                      unsigned(i / (block_dim.x * block_dim.y))};
    }
    for (;;) {
        size_t waiting = 0, done = 0;
        int line = -1;
        for (size_t j = 0; j < n; ++j) {
            Fiber& f = fibers[descending ? n - 1 - j : j];
            if (f.state == RUNNING) {
                current = &f;
                thread_idx = f.tid;
                to_fiber(f);
                if (f.state == FAILED) return false;
            }
            if (f.state == DONE) { ++done; continue; }
            if (line >= 0 && f.line != line) {
                snprintf(error_text, sizeof error_text, "threads of block (%u, %u, %u) "
                         "wait at different __syncthreads (lines %d and %d)",
                         block_idx.x, block_idx.y, block_idx.z, line, f.line);
                return false;
            }
            line = f.line;
            ++waiting;
        }
        if (done == n) return true;
        if (done > 0) {
            snprintf(error_text, sizeof error_text, "in block (%u, %u, %u), %zu threads "
                     "returned while %zu wait at __syncthreads (line %d): undefined on a GPU",
                     block_idx.x, block_idx.y, block_idx.z, done, waiting, line);
            return false;
        }
        for (size_t i = 0; i < n; ++i) fibers[i].state = RUNNING;
    }
}

static int launch(Thunk thunk, void** args, const unsigned* g, const unsigned* b,
                  size_t shared_bytes, int use_fibers)
{
    error_text[0] = 0;
    const size_t n = (size_t)b[0] * b[1] * b[2];
    if (n == 0 || n > 1024 || b[0] > 1024 || b[1] > 1024 || b[2] > 64) {
        snprintf(error_text, sizeof error_text, "block (%u, %u, %u) is not a valid CUDA "
                 "block (at most 1024 threads, z <= 64)", b[0], b[1], b[2]);
        return 1;
    }
    if (g[0] == 0 || g[1] == 0 || g[2] == 0 || g[0] > 2147483647u || g[1] > 65535 || g[2] > 65535) {
        snprintf(error_text, sizeof error_text, "grid (%u, %u, %u) is not a valid CUDA grid",
                 g[0], g[1], g[2]);
        return 1;
    }
    if (use_fibers && !ensure_stacks(n)) {
        snprintf(error_text, sizeof error_text, "cannot map %zu fiber stacks", n);
        return 1;
    }
    dynamic_shared = (unsigned char*)aligned_alloc(16, (shared_bytes + 15) / 16 * 16 + 16);
    job_thunk = thunk;
    job_args = args;
    fiber_mode = use_fibers != 0;
    block_dim = dim3(b[0], b[1], b[2]);
    grid_dim = dim3(g[0], g[1], g[2]);
    bool ok = true;
    const unsigned long long blocks = (unsigned long long)g[0] * g[1] * g[2];
    const unsigned long long lo = first_block, hi = end_block < blocks ? end_block : blocks;
    for (unsigned long long j = lo; ok && j < hi; ++j) {
        const unsigned long long b = descending ? hi - 1 - (j - lo) : j;
        block_idx = uint3{unsigned(b % g[0]), unsigned(b / g[0] % g[1]),
                          unsigned(b / ((unsigned long long)g[0] * g[1]))};
        ok = use_fibers ? run_block_fibers(n) : run_block_loop();
    }
    fiber_mode = false;
    free(dynamic_shared);
    dynamic_shared = nullptr;
    return ok ? 0 : 1;
}

// Calls f with each parameter read from the storage a[i] points to (filled by ctypes
// with exactly the parameter's C type, which the Python side has checked).
template <class... A, size_t... I>
static inline void call_with(void (*f)(A...), void** a, std::index_sequence<I...>)
{
    f(*static_cast<typename std::decay<A>::type*>(a[I])...);
}
template <class... A>
static inline void call_with(void (*f)(A...), void** a)
{
    call_with(f, a, std::index_sequence_for<A...>{});
}
template <auto F>
static void thunk(void** a) { call_with(F, a); }

}  // namespace segemu

#define __syncthreads() segemu::syncthreads(__LINE__)
#define __trap() segemu::fail("__trap()", __LINE__)
#undef assert
#define assert(e) ((e) ? (void)0 : segemu::fail("assert(" #e ") failed", __LINE__))

// Only the entry points are exported: the library is built with -fvisibility=hidden.
#define SEGEMU_EXPORT __attribute__((visibility("default")))
extern "C" SEGEMU_EXPORT const char* segemu_error() { return segemu::error_text; }
extern "C" SEGEMU_EXPORT void segemu_configure(int descending, unsigned long long first_block,
                                               unsigned long long end_block)
{
    segemu::descending = descending != 0;
    segemu::first_block = first_block;
    segemu::end_block = end_block;
}
