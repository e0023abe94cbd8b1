// im2col and col2im: the column matrix through which Sec. 4.2 (like Caffe) turns a
// convolution into one matrix multiply.
//
// Layout: x (N, C, H, W), cols (N, C, KH, KW, OH, OW), both C-contiguous.
//   cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH + i*DH, ow*SW - PW + j*DW]
// and 0 where that pixel lies in the padding.  col2im is the adjoint: it sums, for each
// pixel, every column entry that im2col copied from it.
//
// Both kernels walk their outputs with a grid-stride loop, so any grid and block size
// gives the same result.  col2im gathers (one thread per pixel) instead of scattering
// (one thread per column entry, with atomics): each pixel is written once and its taps
// are added in a fixed order, so the result is reproducible bit for bit.
//
// Indices are 64-bit wherever a product can pass 2^31: the flat index, and a plane
// (n, c), which holds KH*KW*OH*OW column entries (C=1 at 2^16 taps and 256x128 outputs
// already has 2^31).  Single coordinates (h, w, oh, ow, taps) are 32-bit.
// The grid-stride loop and seg_source (which output reads a pixel through a tap) come
// from window.cuh, shared with the segmentation-aware kernels.

#include "window.cuh"

template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
im2col_kernel(const T* x, T* cols, int N, int C, int H, int W, int KH,
              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
              int DH, int DW)
{
    const long long plane = (long long)KH * KW * OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * plane) {
        const long long nc = i / plane;
        long long r = i - nc * plane;
        const int ow = (int)(r % OW);
        r /= OW;
        const int oh = (int)(r % OH);
        r /= OH;
        const int kj = (int)(r % KW), ki = (int)(r / KW);
        const int h = oh * SH - PH + ki * DH, w = ow * SW - PW + kj * DW;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : T(0);
    }
}

template <typename T>
__global__ void __launch_bounds__(SEG_MAX_THREADS, 1)
col2im_kernel(const T* cols, T* x, int N, int C, int H, int W, int KH,
              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
              int DH, int DW)
{
    const long long plane = (long long)H * W, P = (long long)OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * plane) {
        const long long nc = i / plane;
        const long long r = i - nc * plane;
        const int h = (int)(r / W), w = (int)(r % W);
        const T* src = cols + nc * KH * KW * P;
        T acc = T(0);
        for (int ki = 0; ki < KH; ++ki) {
            const int oh = seg_source(h, PH, ki * DH, SH, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int ow = seg_source(w, PW, kj * DW, SW, OW);
                if (ow >= 0) acc += src[(ki * KW + kj) * P + (long long)oh * OW + ow];
            }
        }
        x[i] = acc;
    }
}
