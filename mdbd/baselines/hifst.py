"""HiFST: High-frequency multiscale Fusion and Sort Transform of gradient magnitudes.

Re-implemented from Golestaneh & Karam, "Spatially-varying blur detection based on multiscale fused and
sorted transform coefficients of gradient magnitudes" (CVPR 2017):

1. grey image (Gaussian sigma 0.5 first), Sobel gradient magnitude G;
2. at every pixel, the orthonormal DCT-II of the M x M window of G centred there, for M = 7, 15, 31, 63;
3. keep each window's high-frequency coefficients (0-based indices with u + v >= M - 1: M(M+1)/2 of them),
   pool their absolute values over the four sizes (2660 per pixel) and sort them ascending;
4. layer t is the t-th smallest value at every pixel; the first 7 + 15 + 31 + 63 + 1 = 117 layers are kept,
   each min-max normalised over the image, then max-pooled into one map T;
5. D = local entropy (7 x 7) of T times T;
6. the final map is D smoothed by the domain-transform recursive filter (Gastal & Oliveira 2011), guided by
   the grey image.

The paper's per-pixel loop is replaced by linear algebra: a DCT coefficient of the sliding window at every
pixel is a separable correlation of G with two DCT basis vectors, so a whole strip of rows is one matrix
product along the rows (all M row frequencies) and one product per row frequency along the columns (only the
column frequencies that make a high-frequency pair). Strips keep memory bounded.
"""

from __future__ import annotations

import math

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from scipy import fft, ndimage
from skimage.filters.rank import entropy
from threadpoolctl import threadpool_limits

from mdbd.baselines.common import check_image, downscaled_shape, finish_map, min_max, resize_to, to_gray
from mdbd.errors import ConfigError

WINDOW_SIZES = (7, 15, 31, 63)
#: Bytes of DCT coefficients held at once per strip of rows (the memory bound).
STRIP_BYTES = 16 * 2**20


def dct_matrix(size: int) -> np.ndarray:
    """Orthonormal DCT-II matrix D (row k = basis vector k), so that dctn(P, norm='ortho') = D @ P @ D.T."""
    return fft.dct(np.eye(size), norm="ortho", axis=0)


def high_frequency_mask(size: int) -> np.ndarray:
    """Boolean (size, size) mask of the high-frequency DCT coefficients: 0-based u + v >= size - 1."""
    u, v = np.indices((size, size))
    return (u + v) >= size - 1


def _pad(image: np.ndarray, radius: int) -> np.ndarray:
    # Mirror padding: border windows see plausible content instead of a step to zero.
    return np.pad(image, radius, mode="symmetric")


def _strip_dct(padded: np.ndarray, size: int, radius: int, rows: slice, width: int,
               mask: np.ndarray, dct: np.ndarray, out: np.ndarray) -> None:
    """Write into `out` (rows * width, mask.sum()) the masked DCT of every window centred in `rows`.

    `padded` is the image padded by `radius` >= size // 2 on every side.
    """
    k = size // 2
    off = radius - k
    sub = padded[rows.start + off: rows.stop + off + 2 * k, off: off + width + 2 * k]
    n_rows = rows.stop - rows.start
    # Along the rows: R[y, x, u] = sum_a sub[y + a, x] * D[u, a], for every row frequency u at once.
    win = np.ascontiguousarray(sliding_window_view(sub, size, axis=0)).reshape(-1, size)
    row_pass = (win @ dct.T).reshape(n_rows, width + 2 * k, size)
    col = 0
    for u in range(size):
        v_sel = np.flatnonzero(mask[u])
        if v_sel.size == 0:
            continue
        # Along the columns, only the column frequencies v that this u pairs with.
        win = np.ascontiguousarray(sliding_window_view(row_pass[:, :, u], size, axis=1)).reshape(-1, size)
        out[:, col: col + v_sel.size] = win @ dct[v_sel].T
        col += v_sel.size


def sliding_dct(image: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """DCT-II (orthonormal) of the size x size window centred at every pixel, mirror-padded at the borders.

    Returns (H, W, n) float64: the coefficients selected by `mask` (default: all), in row-major (u, v) order.
    """
    if size % 2 != 1 or size < 1:
        raise ConfigError(f"sliding_dct: window size {size} must be a positive odd number")
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones((size, size), bool) if mask is None else np.asarray(mask, bool)
    h, w = image.shape
    out = np.empty((h * w, int(mask.sum())))
    _strip_dct(_pad(image, size // 2), size, size // 2, slice(0, h), w, mask, dct_matrix(size), out)
    return out.reshape(h, w, -1)


def sorted_layers(gradient: np.ndarray, sizes: tuple[int, ...] = WINDOW_SIZES,
                  n_layers: int | None = None) -> np.ndarray:
    """(H, W, n_layers) float32: per pixel, the n_layers smallest |high-frequency DCT| values over all window
    sizes, in ascending order."""
    h, w = gradient.shape
    sizes = tuple(int(s) for s in sizes)
    if any(s % 2 != 1 or s < 3 for s in sizes):
        raise ConfigError(f"HiFST window sizes {sizes}: each must be an odd number >= 3")
    n_layers = sum(sizes) + 1 if n_layers is None else int(n_layers)
    masks = [high_frequency_mask(s) for s in sizes]
    counts = [int(m.sum()) for m in masks]
    total = sum(counts)
    if not 1 <= n_layers <= total:
        raise ConfigError(f"HiFST n_layers={n_layers}: must be between 1 and {total} for window sizes {sizes}")
    radius = max(sizes) // 2
    padded = _pad(np.asarray(gradient, dtype=np.float32), radius)
    dcts = [dct_matrix(s).astype(np.float32) for s in sizes]
    strip = max(1, min(h, STRIP_BYTES // (4 * w * total)))
    layers = np.empty((h, w, n_layers), np.float32)
    buf = np.empty((strip * w, total), np.float32)
    for y0 in range(0, h, strip):
        rows = slice(y0, min(h, y0 + strip))
        n = (rows.stop - rows.start) * w
        col = 0
        for s, m, d, c in zip(sizes, masks, dcts, counts):
            _strip_dct(padded, s, radius, rows, w, m, d, buf[:n, col: col + c])
            col += c
        coef = np.abs(buf[:n], out=buf[:n])
        if n_layers < total:
            coef.partition(n_layers - 1, axis=1)
            coef = coef[:, :n_layers]
        layers[rows] = np.sort(coef, axis=1).reshape(rows.stop - rows.start, w, n_layers)
    return layers


def domain_transform_filter(image: np.ndarray, guide: np.ndarray, sigma_s: float = 15.0, sigma_r: float = 0.25,
                            iterations: int = 3) -> np.ndarray:
    """Edge-aware recursive filter of Gastal & Oliveira (SIGGRAPH 2011), joint form (edges taken from `guide`).

    Each 1-D pass is a first-order recursion whose feedback a**d shrinks where the guide changes, so smoothing
    stops at edges. The recursion runs along one axis; every step is vectorised over the other axis.
    """
    if sigma_s <= 0 or sigma_r <= 0 or iterations < 1:
        raise ConfigError(f"domain_transform_filter: need sigma_s > 0, sigma_r > 0, iterations >= 1 "
                          f"(got {sigma_s}, {sigma_r}, {iterations})")
    out = np.array(image, dtype=np.float64)
    guide = np.asarray(guide, dtype=np.float64)
    if guide.ndim == 2:
        guide = guide[..., None]
    if guide.shape[:2] != out.shape:
        raise ConfigError(f"domain_transform_filter: guide size {guide.shape[:2]} differs from image size {out.shape}")
    ratio = sigma_s / sigma_r
    # Derivative of the domain transform between neighbours (Eq. 11): 1 + sigma_s/sigma_r * sum_c |dI_c|.
    dx = 1.0 + ratio * np.abs(np.diff(guide, axis=1)).sum(axis=2)  # (H, W-1), between x-1 and x
    dy = 1.0 + ratio * np.abs(np.diff(guide, axis=0)).sum(axis=2)  # (H-1, W)
    for i in range(iterations):
        # Per-iteration sigma so that the iterations compose to sigma_s (Eq. 14).
        sigma_i = sigma_s * math.sqrt(3.0) * 2.0 ** (iterations - i - 1) / math.sqrt(4.0 ** iterations - 1)
        a = math.exp(-math.sqrt(2.0) / sigma_i)
        out = _recursive_pass(out.T, (a ** dx).T).T  # horizontal: recursion along x
        out = _recursive_pass(out, a ** dy)  # vertical: recursion along y
    return out


def _recursive_pass(values: np.ndarray, feedback: np.ndarray) -> np.ndarray:
    """Causal then anti-causal recursion along axis 0; feedback[i] couples samples i and i + 1."""
    f = np.array(values, dtype=np.float64, order="C")
    for i in range(1, f.shape[0]):
        f[i] += feedback[i - 1] * (f[i - 1] - f[i])
    for i in range(f.shape[0] - 2, -1, -1):
        f[i] += feedback[i] * (f[i + 1] - f[i])
    return f


def local_entropy(values01: np.ndarray, size: int = 7) -> np.ndarray:
    """Shannon entropy (bits) of the 256-bin histogram of `values01` (in [0, 1]) in each size x size window."""
    u8 = np.round(np.clip(values01, 0, 1) * 255).astype(np.uint8)
    return entropy(u8, np.ones((size, size), bool)).astype(np.float64)


def hifst_map(image_u8: np.ndarray, *, window_sizes: tuple[int, ...] = WINDOW_SIZES, n_layers: int | None = None,
              entropy_size: int = 7, sigma_s: float = 15.0, sigma_r: float = 0.25,
              max_side: int | None = None) -> np.ndarray:
    """HiFST sharpness map: float32 (H, W) in [0, 1], high = in focus.

    n_layers: sorted layers kept (default sum(window_sizes) + 1 = 117, as in the authors' release).
    max_side: compute on a copy whose longer side is at most this many pixels, then upsample the map
    (None = native resolution, the paper's setting).
    """
    image_u8 = check_image(image_u8)
    shape = image_u8.shape[:2]
    work_shape = downscaled_shape(shape, max_side)
    rgb = image_u8.astype(np.float64) / 255.0
    if work_shape != shape:
        rgb = resize_to(rgb, work_shape)
    rgb = ndimage.gaussian_filter(rgb, sigma=(0.5, 0.5, 0), mode="nearest")
    gray = to_gray(rgb * 255.0)  # in [0, 1]
    gradient = np.hypot(ndimage.sobel(gray * 255.0, axis=0, mode="nearest"),
                        ndimage.sobel(gray * 255.0, axis=1, mode="nearest"))
    # Many small matrix products: one BLAS thread is ~10x faster than two on a shared, busy machine.
    with threadpool_limits(limits=1, user_api="blas"):
        layers = sorted_layers(gradient, tuple(window_sizes), n_layers)
    lo = layers.min(axis=(0, 1))
    span = np.maximum(layers.max(axis=(0, 1)) - lo, 1e-12)
    layers -= lo  # in place: the layer stack is the largest array here
    layers /= span
    pooled = layers.max(axis=2)  # max-pooling of the normalised layers
    pooled = min_max(pooled)
    weighted = local_entropy(pooled, entropy_size) * pooled
    guide = ndimage.gaussian_filter(min_max(gray), sigma=1.0, truncate=1.0, mode="nearest")
    smoothed = domain_transform_filter(weighted, guide, sigma_s, sigma_r, iterations=3)
    return finish_map(smoothed, shape)
