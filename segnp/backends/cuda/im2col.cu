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

template <typename T>
__global__ void im2col_kernel(const T* x, T* cols, int N, int C, int H, int W, int KH,
                              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
                              int DH, int DW)
{
    const int plane = KH * KW * OH * OW;
    const long long total = (long long)N * C * plane;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
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

// The output index o along one axis whose tap t (offset t*D) reads input index i, or -1
// when none does: i = o*S - P + t*D must hold for an integer o in [0, O).
__device__ inline int col_source(int i, int t, int S, int P, int D, int O)
{
    const int s = i + P - t * D;
    if (s < 0 || s % S != 0) return -1;
    return s / S < O ? s / S : -1;
}

template <typename T>
__global__ void col2im_kernel(const T* cols, T* x, int N, int C, int H, int W, int KH,
                              int KW, int OH, int OW, int SH, int SW, int PH, int PW,
                              int DH, int DW)
{
    const int plane = H * W, P = OH * OW;
    const long long total = (long long)N * C * plane;
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < total;
         i += (long long)blockDim.x * gridDim.x) {
        const long long nc = i / plane;
        const int r = (int)(i - nc * plane);
        const int h = r / W, w = r % W;
        const T* src = cols + nc * KH * KW * P;
        T acc = T(0);
        for (int ki = 0; ki < KH; ++ki) {
            const int oh = col_source(h, ki, SH, PH, DH, OH);
            if (oh < 0) continue;
            for (int kj = 0; kj < KW; ++kj) {
                const int ow = col_source(w, kj, SW, PW, DW, OW);
                if (ow >= 0) acc += src[(ki * KW + kj) * P + oh * OW + ow];
            }
        }
        x[i] = acc;
    }
}
