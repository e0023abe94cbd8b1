"""The array-level kernel names that every backend must expose, with one signature.

``tests/test_backend_api.py`` checks that each backend has each name and that the
parameter lists match the NumPy backend's.  Shape letters: N batch, C channels,
H W input size, OH OW output size, K = KH*KW taps (row-major, tap K//2 is the centre
of an odd window), D embedding channels, F filters.

Signatures (the NumPy backend documents each in full):

- ``im2col(x, ksize, stride=1, padding=0, dilation=1)``: (N, C, H, W) -> (N, C, KH, KW, OH, OW)
- ``col2im(cols, size, stride=1, padding=0, dilation=1)``: the adjoint of im2col
- ``conv2d(x, W, stride=1, padding=0, dilation=1)``: (N, C, H, W), (F, C, KH, KW) ->
  y (N, F, OH, OW), the convolution without bias (im2col and a product, Sec. 4.2)
- ``conv2d_backward(x, W, gy, stride=1, padding=0, dilation=1, need_x=True,
  need_W=True)`` -> (gx, gW), None where not needed
The segmentation-aware kernels take the :class:`segnp.window.Window` ``win`` that the
public function built (``Window.segaware``) and nothing else about the window; they
trust the public function's checks and keep only those of a launch (the arrays agree
with ``win``: ``Window.check_operands``).  ``Backend.tap_valid(win, include_center=True,
dtype=float32)`` is the (1, K, OH, OW) tap validity of ``win``, cached per device.

- ``im2dist(e, win, norm='l1')``: (N, D, H, W) -> d (N, K, OH, OW), 0 at taps outside
  the image (Sec. 4.2)
- ``im2dist_backward(e, d, gd, win, norm='l1')`` -> ge
- ``masked_conv(x, m, W, win, normalize=True)``: Eq. 7 without bias; m (N, K, OH, OW)
  is already 0 at invalid taps -> y (N, F, OH, OW)
- ``masked_conv_backward(x, m, W, gy, win, normalize=True, need_x=True, need_m=True,
  need_W=True)`` -> (gx, gm, gW), None where not needed
- ``bilateral(x, m, win)``: Eq. 4 -> y (N, C, OH, OW)
- ``bilateral_backward(x, m, gy, win, need_x=True, need_m=True)`` -> (gx, gm)
- ``bilateral_repeat(x, m, win, repeat=1)``: Eq. 4 ``repeat`` times with one mask, for a
  window whose output has x's size -> (y_1, .., y_repeat), each (N, C, H, W)
- ``bilateral_repeat_backward(x, ys, m, gy, win, need_x=True, need_m=True)`` -> (gx, gm),
  the mask's gradient summed over the passes
- ``masked_conv_transpose(x, m, W, win, normalize=True)``: the transposed product of
  ``segaware_conv_transpose2d``; x (N, C, H, W), m (N, K, H, W), W (C, F, KS, KS),
  ``win`` = ``Window.transposed`` -> y (N, F, OH, OW)
- ``masked_conv_transpose_backward(x, m, W, gy, win, normalize=True, need_x=True,
  need_m=True, need_W=True)`` -> (gx, gm, gW), None where not needed
- ``same_label_pairs(labels, ksize, dilation=1, ignore_index=255)``: (N, H, W) ->
  int8 (N, K, H, W): 1 same label, 0 different, -1 not counted (outside, centre, ignored)
- ``embedding_pair_loss(e, labels, ksize=3, dilation=1, alpha=0.5, beta=2.0, norm='l1',
  ignore_index=255)``: Eqs. 1-2 for one dilation -> (loss_sum 0-d array, count: an int,
  or a 0-d integer array on the device, where the CUDA backends keep it to avoid a sync)
- ``embedding_pair_loss_backward(e, labels, gloss, ksize=3, dilation=1, alpha=0.5,
  beta=2.0, norm='l1', ignore_index=255)`` -> ge, the gradient of loss_sum scaled by gloss
"""

KERNEL_NAMES = (
    "im2col",
    "col2im",
    "conv2d",
    "conv2d_backward",
    "im2dist",
    "im2dist_backward",
    "masked_conv",
    "masked_conv_backward",
    "bilateral",
    "bilateral_backward",
    "bilateral_repeat",
    "bilateral_repeat_backward",
    "masked_conv_transpose",
    "masked_conv_transpose_backward",
    "same_label_pairs",
    "embedding_pair_loss",
    "embedding_pair_loss_backward",
)
