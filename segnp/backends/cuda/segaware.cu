// Segmentation-aware kernels (Harley et al., ICCV 2017, Secs. 3.2 and 4.2):
// im2dist (the distances behind the mask of Eq. 3), the bilateral filter of Eq. 4,
// the pieces shared with the masked GEMM of Eq. 7 (mask sums, the mask gradient), and
// the masked columns of the composed reference path.
//
// Layout: e (N, D, H, W), x (N, C, H, W), masks and distances (N, K, OH, OW), P = OH*OW;
// window conventions in window.cuh.
//
// Every kernel walks its outputs with a grid-stride loop, so any grid and block size
// gives the same result.  Backward kernels gather: each thread owns one element of
// the gradient and sums what references it, so nothing is written twice and results
// are bitwise reproducible.

#include "window.cuh"

// d[n, k, o] = || e[:, tap(o, k)] - e[:, centre(o)] ||; 0 where the tap is outside.
// The centre of output (oh, ow) is the pixel of tap K/2, (oh*SH + CH, ow*SW + CW); the
// launcher keeps the padding at most the default, so it always lies in the image.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
im2dist_fwd(const T* e, T* d, int N, int D, int H, int W, int KS,
            int OH, int OW, int SH, int SW, int PH, int PW, int DH, int DW,
            int CH, int CW, int norm)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * K * P) {
        const int o = (int)(i % P), k = (int)((i / P) % K), n = (int)(i / ((long long)P * K));
        const int oh = o / OW, ow = o % OW;
        const int t = g.tap(oh, ow, k), ctr = (oh * SH + CH) * W + ow * SW + CW;
        T acc = T(0);
        if (t >= 0) {
            const T* en = e + (long long)n * D * HW;
            for (int c = 0; c < D; ++c)
                acc += seg_norm_term(en[(long long)c * HW + t] - en[(long long)c * HW + ctr], norm);
            if (norm == SEG_NORM_L2) acc = seg_sqrt(acc);
        }
        d[i] = acc;
    }
}

// ge[n, :, p]: pixel p is the tap of some pairs and the centre of others; both sums
// are gathered here, the first by walking the window backwards from p.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
im2dist_bwd(const T* e, const T* d, const T* gd, T* ge, int N, int D,
            int H, int W, int KS, int OH, int OW, int SH, int SW, int PH,
            int PW, int DH, int DW, int CH, int CW, int norm)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * D * HW) {
        const int p = (int)(i % HW), ph = p / W, pw = p % W;
        const int n = (int)(i / HW / D);
        const T* ec = e + i / HW * HW;
        const T* dn = d + (long long)n * K * P;
        const T* gdn = gd + (long long)n * K * P;
        const T ep = ec[p];
        T acc = T(0);
        g.readers(ph, pw, [&](int k, int oh, int ow) {
            const long long j = (long long)k * P + oh * OW + ow;
            const T centre = ec[(oh * SH + CH) * W + ow * SW + CW];
            acc += gdn[j] * seg_norm_grad(ep - centre, dn[j], norm);
        });
        // p as a centre: of at most one output, since centres move by the stride.
        const int oh = seg_source(ph, -CH, 0, SH, OH), ow = seg_source(pw, -CW, 0, SW, OW);
        if (oh >= 0 && ow >= 0) {
            for (int k = 0; k < K; ++k) {
                const int t = g.tap(oh, ow, k);
                if (t < 0) continue;
                const long long j = (long long)k * P + oh * OW + ow;
                acc -= gdn[j] * seg_norm_grad(ec[t] - ep, dn[j], norm);
            }
        }
        ge[i] = acc;
    }
}

// inv[n, o] = 1 / (sum_k m[n, k, o] + eps), the denominator of Eqs. 4 and 7;
// 1 when the caller does not normalise (normalize == 0).
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
mask_inv(const T* m, T* inv, int N, int K, int P, T eps, int normalize)
{
    SEG_GRID_LOOP(i, (long long)N * P) {
        const T* mn = m + (i / P) * K * P + i % P;
        T s = T(0);
        for (int k = 0; k < K; ++k) s += mn[(long long)k * P];
        inv[i] = normalize ? T(1) / (s + eps) : T(1);
    }
}

// Eq. 4: y[n, c, o] = sum_k x[n, c, tap(o, k)] m[n, k, o] / (sum_k m[n, k, o] + eps).
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
bilateral_fwd(const T* x, const T* m, T* y, int N, int C, int H, int W,
              int KS, int OH, int OW, int SH, int SW, int PH, int PW,
              int DH, int DW, T eps)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * P) {
        const int o = (int)(i % P), n = (int)(i / P / C);
        const T* xc = x + i / P * H * W;
        const T* mn = m + (long long)n * K * P + o;
        T num = T(0), den = T(0);
        for (int k = 0; k < K; ++k) {
            const T mk = mn[(long long)k * P];
            const int t = g.tap(o / OW, o % OW, k);
            den += mk;
            if (t >= 0) num += xc[t] * mk;
        }
        y[i] = num / (den + eps);
    }
}

// gx[n, c, p] = sum over (o, k) with tap(o, k) == p of gy[n, c, o] m[n, k, o] inv[n, o].
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
bilateral_bwd_x(const T* gy, const T* m, const T* inv, T* gx, int N, int C,
                int H, int W, int KS, int OH, int OW, int SH, int SW,
                int PH, int PW, int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * C * HW) {
        const int p = (int)(i % HW), n = (int)(i / HW / C);
        const T* gyc = gy + i / HW * P;
        const T* mn = m + (long long)n * K * P;
        const T* invn = inv + (long long)n * P;
        T acc = T(0);
        g.readers(p / W, p % W, [&](int k, int oh, int ow) {
            const int o = oh * OW + ow;
            acc += gyc[o] * mn[(long long)k * P + o] * invn[o];
        });
        gx[i] = acc;
    }
}

// G[n, k, o] = sum_c gy[n, c, o] x[n, c, tap(o, k)]: how much tap k of output o would
// add to the loss per unit of (unnormalised) weight.  The mask gradient of Eq. 4 is
// built from it by mask_grad_finish.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tap_dot(const T* x, const T* gy, T* G, int N, int C, int H, int W, int KS,
        int OH, int OW, int SH, int SW, int PH, int PW, int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * K * P) {
        const int o = (int)(i % P), k = (int)((i / P) % K), n = (int)(i / ((long long)P * K));
        const int t = g.tap(o / OW, o % OW, k);
        T acc = T(0);
        if (t >= 0) {
            const T* xn = x + (long long)n * C * HW + t;
            const T* gyn = gy + (long long)n * C * P + o;
            for (int c = 0; c < C; ++c) acc += gyn[(long long)c * P] * xn[(long long)c * HW];
        }
        G[i] = acc;
    }
}

// In place: G[n, k, o] <- inv (G_k - inv sum_j m_j G_j).  With y = inv * sum_k m_k A_k
// and inv = 1 / (sum_k m_k + eps), dy/dm_k = inv (A_k - y); summed against gy this is
// the line above, for Eq. 4 (A_k = x_k) and for Eq. 7 (A_k = sum_c W_ck x_ck) alike.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
mask_grad_finish(const T* m, const T* inv, T* G, int N, int K, int P)
{
    SEG_GRID_LOOP(i, (long long)N * P) {
        const T* mn = m + (i / P) * K * P + i % P;
        T* Gn = G + (i / P) * K * P + i % P;
        T dot = T(0);
        for (int k = 0; k < K; ++k) dot += mn[(long long)k * P] * Gn[(long long)k * P];
        const T s = inv[i];
        for (int k = 0; k < K; ++k) Gn[(long long)k * P] = s * (Gn[(long long)k * P] - s * dot);
    }
}

// The composed reference path of Eq. 7 (Sec. 4.2 taken literally): masked columns
// cols[n, c*K + k, o] = x[n, c, tap(o, k)] m[n, k, o], to be multiplied by cuBLAS.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
masked_im2col(const T* x, const T* m, T* cols, int N, int C, int H, int W,
              int KS, int OH, int OW, int SH, int SW, int PH, int PW,
              int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * K * P) {
        const int o = (int)(i % P), k = (int)((i / P) % K);
        const long long nc = i / ((long long)P * K);
        const int t = g.tap(o / OW, o % OW, k);
        cols[i] = t >= 0 ? x[nc * H * W + t] * m[(nc / C * K + k) * P + o] : T(0);
    }
}

// The adjoint of masked_im2col, gathered: gx[n, c, p] = sum over (o, k) with
// tap(o, k) == p of gcols[n, c*K + k, o] m[n, k, o].
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
masked_col2im(const T* gcols, const T* m, T* gx, int N, int C, int H, int W,
              int KS, int OH, int OW, int SH, int SW, int PH, int PW,
              int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * C * HW) {
        const int p = (int)(i % HW), n = (int)(i / HW / C);
        const T* gc = gcols + i / HW * K * P;
        const T* mn = m + (long long)n * K * P;
        T acc = T(0);
        g.readers(p / W, p % W, [&](int k, int oh, int ow) {
            const long long j = (long long)k * P + oh * OW + ow;
            acc += gc[j] * mn[j];
        });
        gx[i] = acc;
    }
}
