// The masked GEMM of segmentation-aware convolution (Eq. 7, Sec. 4.2), fused:
//
//   y[n, f, o] = inv[n, o] * sum_{c, k} W[f, c, k] * x[n, c, tap(o, k)] * m[n, k, o]
//
// with inv = 1 / (sum_k m + eps) (or 1 when not normalising; see mask_inv in
// segaware.cu).  Sec. 4.2 builds the masked column matrix (C*K x OH*OW per image) and
// multiplies it by W.  Here each block multiplies tiles staged in shared memory, and
// the column tile is masked while it is loaded, so that matrix never exists.  inv
// depends only on the output column, so it is applied once per output in the
// epilogue rather than once per column element: the same product, fewer multiplies.
//
// The backward pass is three more GEMMs of the same shape, each loading its own
// operands on the fly:
//   masked_gemm_bwd_x: gx (C x H*W) = wT (C x K*F) . [gy m inv] gathered back to pixels
//   masked_gemm_bwd_w: gW (F x K*C) = [gy inv] (F x N*P) . masked columns (N*P x K*C),
//                      split over N*P into partial sums added up by the launcher
//   masked_gemm_bwd_m: Q[n, k, o] = sum_c x[n, c, tap(o, k)] (W_k^T gy)[c, o]; the mask
//                      gradient is Q itself, or mask_grad_finish(Q) when normalising.
//
// Layout: x (N, C, H, W), m (N, K, OH, OW), gy (N, F, OH, OW), K = KS*KS taps in
// row-major order, P = OH*OW.  The weights come reordered by the launcher, so that
// each GEMM reads its A operand row by row: wk = W as (F, K, C), wT = W as (C, K, F).
// Reduction and column indices are tap-major (k*C + c, k*F + f): the MG_BK rows of a
// slice then mostly share one tap, and the loaders step through them by additions
// instead of dividing by C and KS for every element.
//
// Tiles: each block computes MG_BM x MG_BN outputs from MG_BK-deep slices of the
// reduction; each thread keeps MG_TM x MG_TN of them in registers, strided by the
// thread grid so that shared-memory reads are broadcasts or consecutive.  The
// launcher may #define another tile shape before this source; blockDim.x must be
// MG_THREADS.  Partial tiles are padded with zeros, so any size works.
//
// Grids: the batch is folded into gridDim.x (block x = n * tiles + tile), since
// gridDim.z (and y) stop at 65535 and a batch may not.
//
// Index widths: offsets into whole tensors are 64-bit.  Within one image, pixel and
// output indices (H*W, OH*OW) and the reduction and column counts (C*K, F*K) are
// 32-bit; the launcher refuses shapes past 2^31 - 1 for any of them, naming the limit.

#include "window.cuh"

#ifndef MG_BM
#define MG_BM 64
#endif
#ifndef MG_BN
#define MG_BN 128
#endif
#ifndef MG_BK
#define MG_BK 16
#endif
#ifndef MG_TM
#define MG_TM 4
#endif
#ifndef MG_TN
#define MG_TN 8
#endif
#define MG_TY (MG_BM / MG_TM)
#define MG_TX (MG_BN / MG_TN)
#define MG_THREADS (MG_TY * MG_TX)
// Row stride = 2 (mod 32) keeps the transposed stores (reduction index fastest)
// free of bank conflicts.
#define MG_PAD 2

static_assert(MG_BM % MG_TM == 0 && MG_BN % MG_TN == 0, "tile not divisible by thread tile");
static_assert(MG_THREADS % MG_BN == 0, "a thread must load one fixed column of the B tile");
static_assert((MG_BK * MG_BM) % MG_THREADS == 0 && (MG_BK * MG_BN) % MG_THREADS == 0,
              "tiles must split evenly over the threads");
static_assert(MG_THREADS % MG_BK == 0, "a thread must load one fixed row of a slice");

// Row r = k*L + l of a tap-major index: tap k = (ki, kj) and inner index l.
struct MgRow {
    int k, ki, kj, l;
};

__device__ inline MgRow mg_row(int r, int L, int KS)
{
    MgRow q;
    q.k = r / L;
    q.l = r - q.k * L;
    q.ki = q.k / KS;
    q.kj = q.k - q.ki * KS;
    return q;
}

// Row base + rr, by additions (rr < MG_BK, so only a few taps are crossed).
__device__ inline MgRow mg_next(MgRow q, int rr, int L, int KS)
{
    q.l += rr;
    while (q.l >= L) {
        q.l -= L;
        ++q.k;
        if (++q.kj == KS) {
            q.kj = 0;
            ++q.ki;
        }
    }
    return q;
}

// acc += As^T Bs for one MG_BK slice.
template <typename T>
__device__ inline void mg_mma(const T (*As)[MG_BM + MG_PAD], const T (*Bs)[MG_BN + MG_PAD],
                              T (*acc)[MG_TN], int ty, int tx)
{
    for (int kk = 0; kk < MG_BK; ++kk) {
        T a[MG_TM], b[MG_TN];
        for (int i = 0; i < MG_TM; ++i) a[i] = As[kk][ty + i * MG_TY];
        for (int j = 0; j < MG_TN; ++j) b[j] = Bs[kk][tx + j * MG_TX];
        for (int i = 0; i < MG_TM; ++i)
            for (int j = 0; j < MG_TN; ++j) acc[i][j] += a[i] * b[j];
    }
}

// Image n and tile t of a block whose gridDim.x holds N images of `tiles` tiles each.
struct MgFold {
    int n, t;
};

__device__ inline MgFold mg_fold(int tiles)
{
    MgFold b;
    b.n = (int)(blockIdx.x / (unsigned)tiles);
    b.t = (int)(blockIdx.x - (unsigned)b.n * (unsigned)tiles);
    return b;
}

template <typename T>
__device__ inline void mg_zero(T (*acc)[MG_TN])
{
    for (int i = 0; i < MG_TM; ++i)
        for (int j = 0; j < MG_TN; ++j) acc[i][j] = T(0);
}

// As[rr][mm] = A[m0 + mm, r0 + rr] for a row-major M x R matrix A (reduction index
// fastest across threads, which is the contiguous direction in memory).
template <typename T>
__device__ inline void mg_load_rowmajor(T (*As)[MG_BM + MG_PAD], const T* A, int M, int R,
                                        int m0, int r0)
{
    for (int e = threadIdx.x; e < MG_BK * MG_BM; e += MG_THREADS) {
        const int rr = e % MG_BK, mm = e / MG_BK, row = m0 + mm, r = r0 + rr;
        As[rr][mm] = (row < M && r < R) ? A[(long long)row * R + r] : T(0);
    }
}

// Forward.  Reduction index r = k*C + c.  Grid (N * ceil(P / MG_BN), ceil(F / MG_BM)).
template <typename T>
__global__ void __launch_bounds__(MG_THREADS, 1)
masked_gemm_fwd(const T* x, const T* m, const T* wk, const T* inv, T* y,
                int C, int F, int H, int W, int KS, int OH, int OW, int SH,
                int SW, int PH, int PW, int DH, int DW)
{
    __shared__ T As[MG_BK][MG_BM + MG_PAD];
    __shared__ T Bs[MG_BK][MG_BN + MG_PAD];
    const int K = KS * KS, P = OH * OW, CK = C * K;
    const int tid = threadIdx.x, ty = tid / MG_TX, tx = tid % MG_TX;
    const MgFold b = mg_fold((P + MG_BN - 1) / MG_BN);
    const int n = b.n, f0 = blockIdx.y * MG_BM, o0 = b.t * MG_BN;
    const T* xn = x + (long long)n * C * H * W;
    const T* mn = m + (long long)n * K * P;
    // This thread always fills column bn of the column tile, so its window is fixed.
    const int bn = tid % MG_BN, o = o0 + bn;
    const bool col_in = o < P;
    const int ih0 = (col_in ? o / OW : 0) * SH - PH, iw0 = (col_in ? o % OW : 0) * SW - PW;

    T acc[MG_TM][MG_TN];
    mg_zero(acc);
    for (int r0 = 0; r0 < CK; r0 += MG_BK) {
        mg_load_rowmajor(As, wk, F, CK, f0, r0);
        const MgRow base = mg_row(r0, C, KS);
        for (int rr = tid / MG_BN; rr < MG_BK; rr += MG_THREADS / MG_BN) {
            const MgRow q = mg_next(base, rr, C, KS);
            T v = T(0);
            if (col_in && q.k < K) {
                const int ih = ih0 + q.ki * DH, iw = iw0 + q.kj * DW;
                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                    v = xn[((long long)q.l * H + ih) * W + iw] * mn[(long long)q.k * P + o];
            }
            Bs[rr][bn] = v;
        }
        __syncthreads();
        mg_mma(As, Bs, acc, ty, tx);
        __syncthreads();
    }
    for (int j = 0; j < MG_TN; ++j) {
        const int oj = o0 + tx + j * MG_TX;
        if (oj >= P) continue;
        const T s = inv[(long long)n * P + oj];
        for (int i = 0; i < MG_TM; ++i) {
            const int f = f0 + ty + i * MG_TY;
            if (f < F) y[((long long)n * F + f) * P + oj] = acc[i][j] * s;
        }
    }
}

// gx.  Reduction index r = k*F + f.  Grid (N * ceil(H*W / MG_BN), ceil(C / MG_BM)).
template <typename T>
__global__ void __launch_bounds__(MG_THREADS, 1)
masked_gemm_bwd_x(const T* gy, const T* m, const T* wT, const T* inv, T* gx,
                  int C, int F, int H, int W, int KS, int OH, int OW, int SH,
                  int SW, int PH, int PW, int DH, int DW)
{
    __shared__ T As[MG_BK][MG_BM + MG_PAD];
    __shared__ T Bs[MG_BK][MG_BN + MG_PAD];
    const int K = KS * KS, P = OH * OW, HW = H * W, R = K * F;
    const int tid = threadIdx.x, ty = tid / MG_TX, tx = tid % MG_TX;
    const MgFold b = mg_fold((HW + MG_BN - 1) / MG_BN);
    const int n = b.n, c0 = blockIdx.y * MG_BM, p0 = b.t * MG_BN;
    const T* gyn = gy + (long long)n * F * P;
    const T* mn = m + (long long)n * K * P;
    const T* invn = inv + (long long)n * P;
    const int bn = tid % MG_BN, p = p0 + bn;
    const bool col_in = p < HW;
    const int ph = col_in ? p / W : 0, pw = col_in ? p % W : 0;

    T acc[MG_TM][MG_TN];
    mg_zero(acc);
    for (int r0 = 0; r0 < R; r0 += MG_BK) {
        mg_load_rowmajor(As, wT, C, R, c0, r0);
        // The output this pixel feeds through the slice's first tap, reused by the
        // rows that share it.
        const MgRow base = mg_row(r0, F, KS);
        const int ohb = seg_source(ph, PH, base.ki * DH, SH, OH);
        const int owb = seg_source(pw, PW, base.kj * DW, SW, OW);
        for (int rr = tid / MG_BN; rr < MG_BK; rr += MG_THREADS / MG_BN) {
            const MgRow q = mg_next(base, rr, F, KS);
            T v = T(0);
            if (col_in && q.k < K) {
                const bool same = q.k == base.k;
                const int oh = same ? ohb : seg_source(ph, PH, q.ki * DH, SH, OH);
                const int ow = same ? owb : seg_source(pw, PW, q.kj * DW, SW, OW);
                if (oh >= 0 && ow >= 0) {
                    const int oo = oh * OW + ow;
                    v = gyn[(long long)q.l * P + oo] * mn[(long long)q.k * P + oo] * invn[oo];
                }
            }
            Bs[rr][bn] = v;
        }
        __syncthreads();
        mg_mma(As, Bs, acc, ty, tx);
        __syncthreads();
    }
    for (int i = 0; i < MG_TM; ++i) {
        const int c = c0 + ty + i * MG_TY;
        if (c >= C) continue;
        for (int j = 0; j < MG_TN; ++j) {
            const int pj = p0 + tx + j * MG_TX;
            if (pj < HW) gx[((long long)n * C + c) * HW + pj] = acc[i][j];
        }
    }
}

// gW partial sums over one chunk of the N*P reduction: part[s] (F x K*C, tap-major).
// A fixed chunk per block (not atomics) keeps the sum deterministic.
// Grid (ceil(C*K / MG_BN), ceil(F / MG_BM), S) with S*chunk >= N*P, chunk % MG_BK == 0.
template <typename T>
__global__ void __launch_bounds__(MG_THREADS, 1)
masked_gemm_bwd_w(const T* x, const T* m, const T* gy, const T* inv, T* part,
                  int N, int C, int F, int H, int W, int KS, int OH, int OW,
                  int SH, int SW, int PH, int PW, int DH, int DW, int chunk)
{
    __shared__ T As[MG_BK][MG_BM + MG_PAD];
    __shared__ T Bs[MG_BK][MG_BN + MG_PAD];
    // Where column q = k*C + c of this tile reads: x offset of channel c, m offset of
    // tap k (both within one image, where C*H*W and K*P may pass 2^31), and the tap's
    // displacement (row, col) from the output's corner.
    __shared__ long long col_x[MG_BN], col_m[MG_BN];
    __shared__ int col_dh[MG_BN], col_dw[MG_BN];
    const int K = KS * KS, P = OH * OW, CK = C * K, HW = H * W;
    const long long NP = (long long)N * P;
    const int tid = threadIdx.x, ty = tid / MG_TX, tx = tid % MG_TX;
    const int s = blockIdx.z, f0 = blockIdx.y * MG_BM, q0 = blockIdx.x * MG_BN;
    const long long rbeg = (long long)s * chunk;
    const long long rend = rbeg + chunk < NP ? rbeg + chunk : NP;
    for (int j = tid; j < MG_BN; j += MG_THREADS) {
        const MgRow q = mg_row(q0 + j, C, KS);
        col_x[j] = (long long)q.l * HW;
        col_m[j] = q0 + j < CK ? (long long)q.k * P : -1;
        col_dh[j] = q.ki * DH - PH;
        col_dw[j] = q.kj * DW - PW;
    }
    __syncthreads();

    // Every load of this thread is at reduction row rr of the slice (reduction index
    // fastest across threads: neighbours read neighbouring outputs of one tap).
    const int rr = tid % MG_BK;
    T acc[MG_TM][MG_TN];
    mg_zero(acc);
    for (long long r0 = rbeg; r0 < rend; r0 += MG_BK) {
        const long long r = r0 + rr;
        const bool row_in = r < rend;
        const int n = row_in ? (int)(r / P) : 0, o = row_in ? (int)(r - (long long)n * P) : 0;
        const int ohs = (o / OW) * SH, ows = (o % OW) * SW;
        for (int e = tid; e < MG_BK * MG_BM; e += MG_THREADS) {
            const int f = f0 + e / MG_BK;
            As[rr][e / MG_BK] =
                (row_in && f < F) ? gy[((long long)n * F + f) * P + o] * inv[r] : T(0);
        }
        for (int e = tid; e < MG_BK * MG_BN; e += MG_THREADS) {
            const int j = e / MG_BK;
            T v = T(0);
            if (row_in && col_m[j] >= 0) {
                const int ih = ohs + col_dh[j], iw = ows + col_dw[j];
                if (ih >= 0 && ih < H && iw >= 0 && iw < W)
                    v = x[(long long)n * C * HW + col_x[j] + ih * W + iw] *
                        m[(long long)n * K * P + col_m[j] + o];
            }
            Bs[rr][j] = v;
        }
        __syncthreads();
        mg_mma(As, Bs, acc, ty, tx);
        __syncthreads();
    }
    for (int i = 0; i < MG_TM; ++i) {
        const int f = f0 + ty + i * MG_TY;
        if (f >= F) continue;
        for (int j = 0; j < MG_TN; ++j) {
            const int q = q0 + tx + j * MG_TX;
            if (q < CK) part[((long long)s * F + f) * CK + q] = acc[i][j];
        }
    }
}

// Q[n, k, o] = sum_c x[n, c, tap(o, k)] * sum_f W[f, c, k] gy[n, f, o].  One block per
// (output tile, tap k, image): it forms the C x MG_BN tile of W_k^T gy one MG_BM slab
// of channels at a time and folds each slab into per-column sums at once, so the
// C x K x P product is never stored.  Grid (N * ceil(P / MG_BN), K).
template <typename T>
__global__ void __launch_bounds__(MG_THREADS, 1)
masked_gemm_bwd_m(const T* x, const T* gy, const T* wT, T* Q, int C, int F,
                  int H, int W, int KS, int OH, int OW, int SH, int SW,
                  int PH, int PW, int DH, int DW)
{
    __shared__ T As[MG_BK][MG_BM + MG_PAD];
    __shared__ T Bs[MG_BK][MG_BN + MG_PAD];
    __shared__ T red[MG_TY][MG_BN];
    const int K = KS * KS, P = OH * OW, HW = H * W;
    const int tid = threadIdx.x, ty = tid / MG_TX, tx = tid % MG_TX;
    const MgFold b = mg_fold((P + MG_BN - 1) / MG_BN);
    const int n = b.n, k = blockIdx.y, o0 = b.t * MG_BN;
    const T* xn = x + (long long)n * C * HW;
    const T* gyn = gy + (long long)n * F * P;
    const T* wk = wT + (long long)k * F;  // row c of W_k^T starts at wk + c*K*F
    const int bn = tid % MG_BN, o = o0 + bn;

    // Pixel read by tap k for each output column this thread accumulates (-1: outside).
    int tap[MG_TN];
    for (int j = 0; j < MG_TN; ++j) {
        const int oj = o0 + tx + j * MG_TX;
        const int ih = (oj / OW) * SH - PH + (k / KS) * DH;
        const int iw = (oj % OW) * SW - PW + (k % KS) * DW;
        tap[j] = (oj < P && ih >= 0 && ih < H && iw >= 0 && iw < W) ? ih * W + iw : -1;
    }
    T colsum[MG_TN];
    for (int j = 0; j < MG_TN; ++j) colsum[j] = T(0);

    T acc[MG_TM][MG_TN];
    for (int c0 = 0; c0 < C; c0 += MG_BM) {
        mg_zero(acc);
        for (int r0 = 0; r0 < F; r0 += MG_BK) {
            for (int e = tid; e < MG_BK * MG_BM; e += MG_THREADS) {
                const int rr = e % MG_BK, c = c0 + e / MG_BK, f = r0 + rr;
                As[rr][e / MG_BK] = (c < C && f < F) ? wk[(long long)c * K * F + f] : T(0);
            }
            for (int rr = tid / MG_BN; rr < MG_BK; rr += MG_THREADS / MG_BN) {
                const int f = r0 + rr;
                Bs[rr][bn] = (o < P && f < F) ? gyn[(long long)f * P + o] : T(0);
            }
            __syncthreads();
            mg_mma(As, Bs, acc, ty, tx);
            __syncthreads();
        }
        for (int i = 0; i < MG_TM; ++i) {
            const int c = c0 + ty + i * MG_TY;
            if (c >= C) continue;
            for (int j = 0; j < MG_TN; ++j)
                if (tap[j] >= 0) colsum[j] += xn[(long long)c * HW + tap[j]] * acc[i][j];
        }
    }
    // Add the MG_TY partial column sums in a fixed order (deterministic, no atomics).
    for (int j = 0; j < MG_TN; ++j) red[ty][tx + j * MG_TX] = colsum[j];
    __syncthreads();
    for (int jj = tid; jj < MG_BN; jj += MG_THREADS) {
        const int oj = o0 + jj;
        if (oj >= P) continue;
        T q = T(0);
        for (int t = 0; t < MG_TY; ++t) q += red[t][jj];
        Q[((long long)n * K + k) * P + oj] = q;
    }
}
