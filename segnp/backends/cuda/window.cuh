// Window arithmetic and distance norms shared by conv.cu, segaware.cu, masked_conv.cu
// and pairs.cu: the CUDA side of segnp/window.py.  (load_source splices it
// into each of them once, so it needs no include guard.)
//
// A window has KS x KS taps in row-major order (K = KS*KS, tap K/2 the centre).  Tap
// (ki, kj) of output (oh, ow) reads input pixel (oh*SH - PH + ki*DH, ow*SW - PW + kj*DW);
// pixels outside the H x W image are padding.

// The largest block a grid-stride launch may use (Runtime's limit on ``threads``);
// block-reduction buffers are sized for it.  Every grid-stride kernel declares
// __launch_bounds__(SEG_MAX_THREADS, 1), so the compiler keeps it within the 64
// registers a thread of such a block may hold (spilling rather than failing the launch
// with "too many resources requested"); the 1 (one resident block suffices) stops
// ptxas from aiming at two blocks per SM, which halves the registers to 32 and spills.
// tests/test_nvrtc.py checks the bound in the PTX.
#define SEG_MAX_THREADS 1024

// A grid-stride loop: i over [0, total), spread over the whole grid, so a kernel gives
// the same result for any grid and block size.
#define SEG_GRID_LOOP(i, total)                                                       \
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < (total); \
         i += (long long)blockDim.x * gridDim.x)

#define SEG_NORM_L1 0
#define SEG_NORM_L2 1
#define SEG_NORM_L2SQ 2

__device__ inline float seg_sqrt(float v) { return sqrtf(v); }
__device__ inline double seg_sqrt(double v) { return sqrt(v); }

// The contribution of one channel's difference to the distance before the root.
template <typename T>
__device__ inline T seg_norm_term(T delta, int norm)
{
    return norm == SEG_NORM_L1 ? (delta < T(0) ? -delta : delta) : delta * delta;
}

// d(norm)/d(delta) for one channel, given the full distance d of the pair.
template <typename T>
__device__ inline T seg_norm_grad(T delta, T d, int norm)
{
    if (norm == SEG_NORM_L1) return delta > T(0) ? T(1) : (delta < T(0) ? T(-1) : T(0));
    if (norm == SEG_NORM_L2) return d > T(0) ? delta / d : T(0);  // finite at delta = 0
    return T(2) * delta;
}

// The output coordinate that reads input coordinate i through tap offset t (ki*DH
// for rows), or -1 when none does (i is off the stride grid or out of range).
__device__ inline int seg_source(int i, int pad, int t, int stride, int osize)
{
    int s = i + pad - t;
    if (s < 0 || s % stride != 0) return -1;
    s /= stride;
    return s < osize ? s : -1;
}

struct SegWindow {
    int H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW;

    // Index (row * W + col) of the pixel tap k of output (oh, ow) reads; -1 in the padding.
    __device__ int tap(int oh, int ow, int k) const
    {
        const int th = oh * SH - PH + (k / KS) * DH, tw = ow * SW - PW + (k % KS) * DW;
        return (th >= 0 && th < H && tw >= 0 && tw < W) ? th * W + tw : -1;
    }

    // Calls visit(k, oh, ow) for every output (oh, ow) whose tap k reads pixel (ph, pw):
    // the window walked backwards, which is how the backward kernels gather.
    template <class Visit>
    __device__ void readers(int ph, int pw, Visit visit) const
    {
        for (int ki = 0; ki < KS; ++ki) {
            const int oh = seg_source(ph, PH, ki * DH, SH, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KS; ++kj) {
                const int ow = seg_source(pw, PW, kj * DW, SW, OW);
                if (ow >= 0) visit(ki * KS + kj, oh, ow);
            }
        }
    }
};
