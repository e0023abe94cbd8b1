// The embedding loss of Eqs. 1-2 (Sec. 3.1), one dilation per launch.
//
// Pairs are (centre pixel, tap) over a KS x KS window with stride 1 and "same"
// padding, so tap (ki, kj) of pixel (ph, pw) is (ph + (ki - KS/2)*DIL, pw + (kj - KS/2)*DIL).
// A pair counts unless the tap is the centre, falls outside the image, or either
// label equals ignore_index.  Its loss is max(d - alpha, 0) for equal labels and
// max(beta - d, 0) otherwise (Eq. 1), with d the chosen norm of the difference.
//
// Layout: e (N, D, H, W), labels int32 (N, H, W), pairs int8 (N, K, H, W).

#include "window.cuh"

// Pixel index of tap k of pixel (ph, pw), or -1 when the pair does not exist
// (the centre tap itself, or a tap outside the image).
__device__ inline int pair_tap(int ph, int pw, int k, int H, int W, int KS, int DIL)
{
    const int r = KS / 2;
    const SegWindow g = {H, W, KS, H, W, 1, 1, r * DIL, r * DIL, DIL, DIL};
    return k == KS * KS / 2 ? -1 : g.tap(ph, pw, k);
}

// The paper's "im2parity": pairs[n, k, p] = 1 (same label), 0 (different), -1 (not counted).
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
im2parity(const int* labels, signed char* pairs, int N, int H, int W, int KS,
          int DIL, int ignore)
{
    const int K = KS * KS, HW = H * W;
    const long long total = (long long)N * K * HW;
    SEG_GRID_LOOP(i, total) {
        const int p = (int)(i % HW), k = (int)((i / HW) % K);
        const int* ln = labels + (i / ((long long)HW * K)) * HW;
        const int t = pair_tap(p / W, p % W, k, H, W, KS, DIL);
        signed char v = -1;
        if (t >= 0 && ln[p] != ignore && ln[t] != ignore) v = ln[p] == ln[t] ? 1 : 0;
        pairs[i] = v;
    }
}

// ||e[:, t] - e[:, p]|| for one pair; en points at image n of e (D x HW).
template <typename T>
__device__ inline T pair_dist(const T* en, int p, int t, int D, int HW, int norm)
{
    T d = T(0);
    for (int c = 0; c < D; ++c)
        d += seg_norm_term(en[(long long)c * HW + t] - en[(long long)c * HW + p], norm);
    return norm == SEG_NORM_L2 ? seg_sqrt(d) : d;
}

// Per-block sums of Eq. 1 over the pairs whose centre this block visits:
// part_loss[b], part_count[b].  The launcher adds the blocks up, so the result is
// deterministic (a fixed tree per block, a fixed order across blocks, no atomics).
// blockDim.x must be at most SEG_MAX_THREADS.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
pair_loss_fwd(const T* e, const int* labels, T* part_loss, int* part_count,
              int N, int D, int H, int W, int KS, int DIL, int norm, T alpha,
              T beta, int ignore)
{
    __shared__ T sloss[SEG_MAX_THREADS];
    __shared__ int scount[SEG_MAX_THREADS];
    const int K = KS * KS, HW = H * W;
    const long long total = (long long)N * HW;
    T loss = T(0);
    int count = 0;
    SEG_GRID_LOOP(i, total) {
        const int p = (int)(i % HW);
        const long long n = i / HW;
        const int* ln = labels + n * HW;
        if (ln[p] == ignore) continue;
        for (int k = 0; k < K; ++k) {
            const int t = pair_tap(p / W, p % W, k, H, W, KS, DIL);
            if (t < 0 || ln[t] == ignore) continue;
            const T d = pair_dist(e + n * D * HW, p, t, D, HW, norm);
            const T l = ln[t] == ln[p] ? d - alpha : beta - d;
            loss += l > T(0) ? l : T(0);
            ++count;
        }
    }
    sloss[threadIdx.x] = loss;
    scount[threadIdx.x] = count;
    __syncthreads();
    // Fold the upper half onto the lower one until one value is left; rounding the
    // half up lets any block size work, not only powers of two.
    for (int n = blockDim.x; n > 1;) {
        const int half = (n + 1) / 2;
        if ((int)threadIdx.x + half < n) {
            sloss[threadIdx.x] += sloss[threadIdx.x + half];
            scount[threadIdx.x] += scount[threadIdx.x + half];
        }
        __syncthreads();
        n = half;
    }
    if (threadIdx.x == 0) {
        part_loss[blockIdx.x] = sloss[0];
        part_count[blockIdx.x] = scount[0];
    }
}

// ge = gloss[0] * d(loss_sum)/de, gathered per pixel p.  The window and the pair rules
// are symmetric (tap o_k of p is q, and tap -o_k of q is p, counted alike), so the
// terms p receives as a tap equal those it receives as a centre:
//   ge[:, p] = 2 gloss sum_k slope(p, k) dnorm(e[:, p] - e[:, p + o_k])
// with slope +1 for a same-label pair beyond alpha, -1 for a different-label pair
// closer than beta, 0 otherwise (at the kinks too).  One thread per pixel writes its
// own D values, so nothing is written twice.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
pair_loss_bwd(const T* e, const int* labels, const T* gloss, T* ge, int N,
              int D, int H, int W, int KS, int DIL, int norm, T alpha,
              T beta, int ignore)
{
    const int K = KS * KS, HW = H * W;
    const long long total = (long long)N * HW;
    const T g2 = T(2) * gloss[0];
    SEG_GRID_LOOP(i, total) {
        const int p = (int)(i % HW);
        const long long n = i / HW;
        const int* ln = labels + n * HW;
        const T* en = e + n * D * HW;
        T* gn = ge + n * D * HW;
        for (int c = 0; c < D; ++c) gn[(long long)c * HW + p] = T(0);
        if (ln[p] == ignore) continue;
        for (int k = 0; k < K; ++k) {
            const int t = pair_tap(p / W, p % W, k, H, W, KS, DIL);
            if (t < 0 || ln[t] == ignore) continue;
            const T d = pair_dist(en, p, t, D, HW, norm);
            T slope = T(0);
            if (ln[t] == ln[p] && d > alpha) slope = g2;
            else if (ln[t] != ln[p] && d < beta) slope = -g2;
            if (slope == T(0)) continue;
            for (int c = 0; c < D; ++c) {
                const T delta = en[(long long)c * HW + p] - en[(long long)c * HW + t];
                gn[(long long)c * HW + p] += slope * seg_norm_grad(delta, d, norm);
            }
        }
    }
}
