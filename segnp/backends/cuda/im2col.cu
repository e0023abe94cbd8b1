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
// Indices: a plane (n, c) holds K*OH*OW <= 2^31 column entries, but N*C planes may not,
// so the flat index is 64-bit and is split into plane and offset by one 64-bit division.
// The grid-stride loop and seg_source (which output reads a pixel through a tap) come
// from window.cuh, shared with the segmentation-aware kernels.

#include "window.cuh"

template <typename T>
__global__ void im2col_kernel(const T* x, T* cols, int N, int C, int H, int W, int KH,
                              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
                              int DH, int DW)
{
    const int plane = KH * KW * OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * plane) {
        const long long nc = i / plane;
        int r = (int)(i - nc * plane);
        const int ow = r % OW;
        r /= OW;
        const int oh = r % OH;
        r /= OH;
        const int kj = r % KW, ki = r / KW;
        const int h = oh * SH - PH + ki * DH, w = ow * SW - PW + kj * DW;
        cols[i] = (h >= 0 && h < H && w >= 0 && w < W) ? x[(nc * H + h) * W + w] : T(0);
    }
}

template <typename T>
__global__ void col2im_kernel(const T* cols, T* x, int N, int C, int H, int W, int KH,
                              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
                              int DH, int DW)
{
    const int plane = H * W, P = OH * OW;
    SEG_GRID_LOOP(i, (long long)N * C * plane) {
        const long long nc = i / plane;
        const int r = (int)(i - nc * plane);
        const int h = r / W, w = r % W;
        const T* src = cols + nc * KH * KW * P;
        T acc = T(0);
        for (int ki = 0; ki < KH; ++ki) {
            const int oh = seg_source(h, PH, ki * DH, SH, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int ow = seg_source(w, PW, kj * DW, SW, OW);
                if (ow >= 0) acc += src[(ki * KW + kj) * P + oh * OW + ow];
            }
        }
        x[i] = acc;
    }
}
