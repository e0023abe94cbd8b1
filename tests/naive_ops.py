"""Reference pieces shared by the naive-loop tests, written straight from the paper's
equations (no segnp code), so that every kernel is checked against the same reading."""
import numpy as np


def norm_of(delta, norm):
    """||delta|| of Eq. 3 over every entry: 'l1' sum |.|, 'l2' sqrt(sum .^2), else
    'l2sq' sum .^2."""
    if norm == "l1":
        return np.abs(delta).sum()
    if norm == "l2":
        return np.sqrt((delta ** 2).sum())
    return (delta ** 2).sum()


def _pair(v):
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


def _out_len(size, k, s, p, d):
    return (size + 2 * p - d * (k - 1) - 1) // s + 1


def naive_im2col(x, ksize, stride, padding, dilation):
    """Sec. 4.2's image-to-column matrix: cols[n, c, i, j, oh, ow] = x[n, c, oh*SH - PH +
    i*DH, ow*SW - PW + j*DW], 0 in the padding.  Arguments are ints or pairs."""
    (KH, KW), (SH, SW), (PH, PW), (DH, DW) = map(_pair, (ksize, stride, padding, dilation))
    N, C, H, W = x.shape
    OH, OW = _out_len(H, KH, SH, PH, DH), _out_len(W, KW, SW, PW, DW)
    cols = np.zeros((N, C, KH, KW, OH, OW), dtype=x.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    for oh in range(OH):
                        for ow in range(OW):
                            r = oh * SH - PH + i * DH
                            q = ow * SW - PW + j * DW
                            if 0 <= r < H and 0 <= q < W:
                                cols[n, c, i, j, oh, ow] = x[n, c, r, q]
    return cols


def naive_col2im(cols, size, stride, padding, dilation):
    """The adjoint of :func:`naive_im2col`: every entry added back to its pixel."""
    (SH, SW), (PH, PW), (DH, DW) = map(_pair, (stride, padding, dilation))
    N, C, KH, KW, OH, OW = cols.shape
    H, W = size
    x = np.zeros((N, C, H, W), dtype=cols.dtype)
    for n in range(N):
        for c in range(C):
            for i in range(KH):
                for j in range(KW):
                    for oh in range(OH):
                        for ow in range(OW):
                            r = oh * SH - PH + i * DH
                            q = ow * SW - PW + j * DW
                            if 0 <= r < H and 0 <= q < W:
                                x[n, c, r, q] += cols[n, c, i, j, oh, ow]
    return x


def naive_masked_conv(x, m, Wt, stride, padding, dilation, normalize, gy=None):
    """Eq. 7 per output pixel, with the mask m (N, K, OH, OW) given:

        y[n, f, o] = sum_{c,k} W[f, c, k] x[n, c, tap_k(o)] m[n, k, o] / Z[n, o]

    with Z = sum_k m[n, k, o] + NORM_EPS when ``normalize``, else 1; taps outside the
    image add nothing.  stride, padding, dilation are ints or pairs; padding None is
    dilation * (ksize // 2).  Returns y (float64); with an upstream ``gy`` also its
    gradients (gx, gm, gW).  The bilateral filter of Eq. 4 is the case W = identity
    over channels."""
    from segnp.window import NORM_EPS  # a constant of the definition, not code
    N, C, H, W = x.shape
    F_, KS = Wt.shape[0], Wt.shape[2]
    (SH, SW), (DH, DW) = _pair(stride), _pair(dilation)
    PH, PW = (DH * (KS // 2), DW * (KS // 2)) if padding is None else _pair(padding)
    OH, OW = _out_len(H, KS, SH, PH, DH), _out_len(W, KS, SW, PW, DW)
    Wf = Wt.reshape(F_, C, KS * KS)
    y = np.zeros((N, F_, OH, OW))
    gx, gm, gW = np.zeros(x.shape), np.zeros(m.shape), np.zeros(Wf.shape)

    def taps(oh, ow):
        for k in range(KS * KS):
            th, tw = oh * SH - PH + (k // KS) * DH, ow * SW - PW + (k % KS) * DW
            if 0 <= th < H and 0 <= tw < W:
                yield k, th, tw
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                cols = np.zeros((C, KS * KS))
                for k, th, tw in taps(oh, ow):
                    cols[:, k] = x[n, :, th, tw]
                mk = m[n, :, oh, ow]
                Z = mk.sum() + NORM_EPS if normalize else 1.0
                yo = np.einsum("fck,ck,k->f", Wf, cols, mk) / Z
                y[n, :, oh, ow] = yo
                if gy is None:
                    continue
                g = gy[n, :, oh, ow]
                gW += np.einsum("f,ck,k->fck", g, cols, mk) / Z
                gcols = np.einsum("f,fck,k->ck", g, Wf, mk) / Z
                for k, th, tw in taps(oh, ow):
                    gx[n, :, th, tw] += gcols[:, k]
                gm[n, :, oh, ow] = np.einsum("f,fck,ck->k", g, Wf, cols) / Z
                if normalize:  # through the denominator: dZ/dm_k = 1 for every k
                    gm[n, :, oh, ow] -= (g * yo).sum() / Z
    return y if gy is None else (y, (gx, gm, gW.reshape(Wt.shape)))



def _transpose_taps(H, W, KS, OH, OW, stride, padding, dilation):
    """Yield (ih, iw, k, oh, ow, ph, pw): sample (ih, iw) sends tap k to output pixel
    (oh, ow) of an OH x OW output and sits at (ph, pw) = p(i); taps off the output are
    skipped.  stride, padding, dilation are ints or pairs."""
    (SH, SW), (PH, PW), (DH, DW) = map(_pair, (stride, padding, dilation))
    for ih in range(H):
        for iw in range(W):
            ph, pw = ih * SH - PH + DH * (KS // 2), iw * SW - PW + DW * (KS // 2)
            assert 0 <= ph < OH and 0 <= pw < OW, "p(i) must lie in the output"
            for ki in range(KS):
                for kj in range(KS):
                    oh, ow = ih * SH - PH + ki * DH, iw * SW - PW + kj * DW
                    if 0 <= oh < OH and 0 <= ow < OW:
                        yield ih, iw, ki * KS + kj, oh, ow, ph, pw


def naive_segaware_mask_transpose(e, H, W, KS, lam, stride, padding, dilation, norm):
    """The mask of issue 22's transposed op: m[n, k, ih, iw] = exp(-lam ||e[n, :, o] -
    e[n, :, p(i)]||) for the output pixel o that tap k of sample i reaches, 0 for taps
    off the output.  e (N, D, OH, OW) -> m (N, KS*KS, H, W)."""
    N, _, OH, OW = e.shape
    m = np.zeros((N, KS * KS, H, W))
    for n in range(N):
        for ih, iw, k, oh, ow, ph, pw in _transpose_taps(H, W, KS, OH, OW, stride, padding,
                                                         dilation):
            m[n, k, ih, iw] = np.exp(-lam * norm_of(e[n, :, oh, ow] - e[n, :, ph, pw], norm))
    return m


def naive_masked_conv_transpose(x, m, Wt, out, stride, padding, dilation, normalize):
    """Sample i adds W[c, f, k] x[n, c, i] m[n, k, i] to the output pixel o its tap k
    reaches; with ``normalize`` each output is divided by the sum of the m that reached
    it + NORM_EPS.  x (N, C, H, W), m (N, K, H, W), Wt (C, F, KS, KS), out = (OH, OW)
    -> y (N, F, OH, OW) (float64, no bias)."""
    from segnp.window import NORM_EPS  # a constant of the definition, not code
    N, _, H, W = x.shape
    F_, KS = Wt.shape[1], Wt.shape[2]
    y = np.zeros((N, F_) + tuple(out))
    Z = np.zeros((N,) + tuple(out))
    for n in range(N):
        for ih, iw, k, oh, ow, _, _ in _transpose_taps(H, W, KS, *out, stride, padding,
                                                       dilation):
            mk = m[n, k, ih, iw]
            y[n, :, oh, ow] += mk * (x[n, :, ih, iw] @ Wt[:, :, k // KS, k % KS])
            Z[n, oh, ow] += mk
    if normalize:
        y /= (Z + NORM_EPS)[:, None]
    return y


def naive_segaware_conv_transpose(x, e, Wt, lam, stride, padding, dilation, norm, normalize):
    """Issue 22's segmentation-aware transposed convolution: sample i, at output pixel
    p(i) = i*stride - padding + dilation*(k//2), adds W[c, f, tap] x[n, c, i] to the
    output pixel o = i*stride - padding + tap*dilation, weighted by m = exp(-lam
    ||e[n, :, o] - e[n, :, p(i)]||); the output size is e's.  (float64, no bias)"""
    KS = Wt.shape[2]
    m = naive_segaware_mask_transpose(e, x.shape[2], x.shape[3], KS, lam, stride, padding,
                                      dilation, norm)
    return naive_masked_conv_transpose(x, m, Wt, e.shape[2:], stride, padding, dilation,
                                       normalize)


def naive_segaware_avg_pool(x, e, ksize, lam, stride, padding, dilation, norm):
    """Issue 22's segmentation-aware average pooling, per output pixel: the window of
    output o is centred on pixel o*stride - padding + dilation*(ksize//2); each tap
    inside the image weighs m = exp(-lam ||e[tap] - e[centre]||) and the output is
    sum m x / (sum m + NORM_EPS).  x (N, C, H, W), e (N, D, H, W) (float64)."""
    from segnp.window import NORM_EPS  # a constant of the definition, not code
    (SH, SW), (PH, PW), (DH, DW) = map(_pair, (stride, padding, dilation))
    N, C, H, W = x.shape
    OH, OW = _out_len(H, ksize, SH, PH, DH), _out_len(W, ksize, SW, PW, DW)
    y = np.zeros((N, C, OH, OW))
    for n in range(N):
        for oh in range(OH):
            for ow in range(OW):
                ch = oh * SH - PH + DH * (ksize // 2)
                cw = ow * SW - PW + DW * (ksize // 2)
                num, den = np.zeros(C), 0.0
                for i in range(ksize):
                    for j in range(ksize):
                        r, q = oh * SH - PH + i * DH, ow * SW - PW + j * DW
                        if 0 <= r < H and 0 <= q < W:
                            m = np.exp(-lam * norm_of(e[n, :, r, q] - e[n, :, ch, cw], norm))
                            num += m * x[n, :, r, q]
                            den += m
                y[n, :, oh, ow] = num / (den + NORM_EPS)
    return y
