// The masked transposed convolution of segaware_conv_transpose2d (issue 22): the
// adjoint, in x, of the masked product of Eq. 7.
//
//   y[n, f, p] = inv[n, p] * sum_{(s, k): tap(s, k) == p} m[n, k, s] sum_c W[c, f, k] x[n, c, s]
//
// with inv = 1 / (sum of the same m + eps), or 1 when not normalising (tconv_inv).
// The window is that of the segmentation-aware convolution this op is the adjoint of
// (Window.transposed in segnp/window.py): its image H x W is the output y, its outputs
// OH x OW are the input samples s of x, and tap(s, k) (window.cuh) is the output pixel
// sample s sends tap k to.  So the forward pass walks the window backwards
// (SegWindow::readers) and the backward passes walk it forwards (SegWindow::tap).
//
// Layout: x (N, C, OH, OW), m (N, K, OH, OW), W (C, F, KS, KS), y and gy (N, F, H, W),
// inv (N, H, W); P = OH*OW samples and HW = H*W pixels per image.  Every kernel is a
// grid-stride loop over the elements it writes and gathers what reaches them: no
// atomics, the same result for any grid and block size.

#include "window.cuh"

template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_inv(const T* m, T* inv, int N, int H, int W, int KS, int OH, int OW, int SH, int SW,
          int PH, int PW, int DH, int DW, T eps, int normalize)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * HW) {
        const int p = (int)(i % HW);
        const T* mn = m + i / HW * K * P;
        T s = T(0);
        g.readers(p / W, p % W, [&](int k, int oh, int ow) { s += mn[(long long)k * P + oh * OW + ow]; });
        inv[i] = normalize ? T(1) / (s + eps) : T(1);
    }
}

template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_fwd(const T* x, const T* m, const T* w, const T* inv, T* y, int N, int C, int F,
          int H, int W, int KS, int OH, int OW, int SH, int SW, int PH, int PW, int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * F * HW) {
        const int p = (int)(i % HW), f = (int)((i / HW) % F);
        const long long n = i / HW / F;
        const T* xn = x + n * C * P;
        const T* mn = m + n * K * P;
        T acc = T(0);
        g.readers(p / W, p % W, [&](int k, int oh, int ow) {
            const int s = oh * OW + ow;
            T dot = T(0);
            for (int c = 0; c < C; ++c)
                dot += w[((long long)c * F + f) * K + k] * xn[(long long)c * P + s];
            acc += mn[(long long)k * P + s] * dot;
        });
        y[i] = acc * inv[n * HW + p];
    }
}

// gx[n, c, s] = sum_k m[n, k, s] sum_f W[c, f, k] (gy inv)[n, f, tap(s, k)].
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_bwd_x(const T* gy, const T* m, const T* w, const T* inv, T* gx, int N, int C, int F,
            int H, int W, int KS, int OH, int OW, int SH, int SW, int PH, int PW, int DH,
            int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * C * P) {
        const int s = (int)(i % P), c = (int)((i / P) % C);
        const long long n = i / P / C;
        const T* gyn = gy + n * F * HW;
        T acc = T(0);
        for (int k = 0; k < K; ++k) {
            const int t = g.tap(s / OW, s % OW, k);
            if (t < 0) continue;
            T dot = T(0);
            for (int f = 0; f < F; ++f)
                dot += w[((long long)c * F + f) * K + k] * gyn[(long long)f * HW + t];
            acc += m[(n * K + k) * P + s] * dot * inv[n * HW + t];
        }
        gx[i] = acc;
    }
}

// gW[c, f, k] = sum_{n, s} x[n, c, s] m[n, k, s] (gy inv)[n, f, tap(s, k)]: one thread
// per weight sums the whole batch in a fixed order.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_bwd_w(const T* x, const T* m, const T* gy, const T* inv, T* gw, int N, int C, int F,
            int H, int W, int KS, int OH, int OW, int SH, int SW, int PH, int PW, int DH,
            int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)C * F * K) {
        const int k = (int)(i % K), f = (int)((i / K) % F), c = (int)(i / K / F);
        T acc = T(0);
        for (int n = 0; n < N; ++n) {
            const T* xc = x + ((long long)n * C + c) * P;
            const T* mk = m + ((long long)n * K + k) * P;
            const T* gyf = gy + ((long long)n * F + f) * HW;
            const T* invn = inv + (long long)n * HW;
            for (int s = 0; s < P; ++s) {
                const int t = g.tap(s / OW, s % OW, k);
                if (t >= 0) acc += xc[s] * mk[s] * gyf[t] * invn[t];
            }
        }
        gw[i] = acc;
    }
}

// Q[n, k, s] = sum_c x[n, c, s] sum_f W[c, f, k] (gy inv)[n, f, tap(s, k)], the mask
// gradient before the denominator's share (tconv_grad_z, tconv_finish_m).
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_bwd_m(const T* x, const T* gy, const T* w, const T* inv, T* q, int N, int C, int F,
            int H, int W, int KS, int OH, int OW, int SH, int SW, int PH, int PW, int DH,
            int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * K * P) {
        const int s = (int)(i % P), k = (int)((i / P) % K);
        const long long n = i / P / K;
        const int t = g.tap(s / OW, s % OW, k);
        T acc = T(0);
        if (t >= 0) {
            const T* xn = x + n * C * P + s;
            const T* gyn = gy + n * F * HW + t;
            for (int c = 0; c < C; ++c) {
                T dot = T(0);
                for (int f = 0; f < F; ++f)
                    dot += w[((long long)c * F + f) * K + k] * gyn[(long long)f * HW];
                acc += xn[(long long)c * P] * dot;
            }
            acc *= inv[n * HW + t];
        }
        q[i] = acc;
    }
}

// gZ[n, p] = -inv[n, p] sum_{(s, k): tap(s, k) == p} m[n, k, s] Q[n, k, s]: the gradient
// through the denominator, -sum_f (gy inv) y, without y.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_grad_z(const T* m, const T* q, const T* inv, T* gz, int N, int H, int W, int KS, int OH,
             int OW, int SH, int SW, int PH, int PW, int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * HW) {
        const int p = (int)(i % HW);
        const long long base = i / HW * K * P;
        T s = T(0);
        g.readers(p / W, p % W, [&](int k, int oh, int ow) {
            const long long j = base + (long long)k * P + oh * OW + ow;
            s += m[j] * q[j];
        });
        gz[i] = -inv[i] * s;
    }
}

// In place: Q[n, k, s] += gZ[n, tap(s, k)], every tap that reaches a pixel sharing in
// its denominator.
template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
tconv_finish_m(const T* gz, T* q, int N, int H, int W, int KS, int OH, int OW, int SH, int SW,
               int PH, int PW, int DH, int DW)
{
    const SegWindow g = {H, W, KS, OH, OW, SH, SW, PH, PW, DH, DW};
    const int K = KS * KS, P = OH * OW, HW = H * W;
    SEG_GRID_LOOP(i, (long long)N * K * P) {
        const int s = (int)(i % P), k = (int)((i / P) % K);
        const int t = g.tap(s / OW, s % OW, k);
        if (t >= 0) q[i] += gz[i / P / K * HW + t];
    }
}
