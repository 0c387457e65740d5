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

The paper's per-pixel loop is replaced by linear algebra (torch, one thread), strip of rows by strip of rows so
that memory stays bounded: a DCT coefficient of the sliding window at every pixel is a separable correlation of
G with two DCT basis vectors. Along x, one wide matrix product gives every column frequency v for all rows of
a strip (kept for the rows the next strip's windows share). Along y, for each v, one product with a banded
matrix gives the row frequencies u that pair with v for all the strip's rows at once (up to 16; tall products
keep BLAS efficient). The absolute values are copied to a per-pixel buffer, where a numpy partition (on the
values' int32 bit patterns, which order like non-negative floats) and a sort give the 117 layers.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import fft, ndimage
from skimage.filters.rank import entropy
from threadpoolctl import threadpool_limits

from mdbd.baselines.common import check_image, downscaled_shape, finish_map, min_max, resize_to, to_gray
from mdbd.core.errors import ConfigError
from mdbd.core.threads import torch_threads

WINDOW_SIZES = (7, 15, 31, 63)
#: Bytes of DCT coefficients held at once per strip of rows (the memory bound).
STRIP_BYTES = 64 * 2**20
#: Output rows per matrix product of the column pass (see `_StripDCT`).
ROWS_PER_PRODUCT = 16
#: Strips of rows the row pass's buffer holds (the rows shared with the next strip move back less often).
_Q_STRIPS = 4


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


class _StripDCT:
    """Masked sliding DCT of one window size M, computed strip of rows by strip of rows.

    `padded` is the image padded by `radius` >= M // 2 on every side. The row pass computes, for every column
    frequency v, Q[v, y, x] = sum_b G[y, x + b] D[v, b] as one wide matrix product, and keeps it from one strip
    to the next, so the rows their windows share are transformed once. The column pass gives, for each v, the
    row frequencies u that pair with it (mask[u, v]) for `block` output rows at once, through a banded matrix
    band[r + a, (r, u)] = D[u, a]: product[x, (r, u)] = sum_t Q[v, y + t, x] band[t, (r, u)]. One tall product
    instead of `block` thin ones keeps BLAS efficient; the band's zeros cost (block - 1) / M extra arithmetic.
    """

    def __init__(self, padded: torch.Tensor, size: int, radius: int, width: int, mask: np.ndarray,
                 max_rows: int):
        dct = dct_matrix(size).astype(padded.numpy().dtype)
        self.padded, self.size, self.width = padded, size, width
        self.off = radius - size // 2
        self.dct = torch.from_numpy(dct)
        self.block = min(max_rows, ROWS_PER_PRODUCT)
        taps = size + self.block - 1
        self.bands = []  # (v, u that pair with v, band (taps, block * len(u))), one per column frequency
        for v in range(size):
            u_sel = np.flatnonzero(mask[:, v])
            if u_sel.size:
                band = np.zeros((taps, self.block, u_sel.size), dct.dtype)
                for r in range(self.block):
                    band[r: r + size, r] = dct[u_sel].T
                self.bands.append((v, u_sel, torch.from_numpy(band.reshape(taps, -1))))
        # Q rows held: windows whose top row is q_first .. q_first + q_rows - 1, from q row q_start on.
        self.q = torch.empty((size, _Q_STRIPS * max_rows + size - 1, width), dtype=padded.dtype)
        self.q_first, self.q_rows, self.q_start = 0, 0, 0
        self.scratch = torch.empty(width * self.block * size, dtype=padded.dtype)
        self._steps_cache = {}

    def order(self) -> np.ndarray:
        """Row-major (u, v) indices of the coefficients in the order `__call__` writes them."""
        return np.concatenate([u_sel * self.size + v for v, u_sel, _ in self.bands])

    def _row_pass(self, y0: int, n_rows: int) -> int:
        """Make self.q hold Q for the windows centred in rows y0 .. y0 + n_rows - 1 and return the q row of the
        first. Rows held from the previous strip are reused; q has room for a few strips, so they are moved
        back to its start only once in a while."""
        size, off = self.size, self.off
        need = n_rows + size - 1
        start, kept = 0, 0
        if self.q_first <= y0 < self.q_first + self.q_rows:
            start = self.q_start + y0 - self.q_first
            kept = min(need, self.q_first + self.q_rows - y0)
            if start + need > self.q.shape[1]:
                self.q[:, :kept] = self.q[:, start: start + kept].clone()
                start = 0
        first, n = y0 + kept, need - kept
        sub = self.padded[off + first: off + first + n, off: off + self.width + size - 1]
        # One shifted copy of the rows per tap b (contiguous along x), then one wide product for all v.
        shifted = sub.unfold(1, size, 1).permute(2, 0, 1).contiguous()
        self.q[:, start + kept: start + need] = (self.dct @ shifted.view(size, -1)).view(size, n, self.width)
        self.q_first, self.q_rows, self.q_start = y0, need, start
        return start

    def _steps(self, start: int, n_rows: int, out: torch.Tensor) -> list:
        """(A, band, product, product as (x, r, u), destination) for every matrix product of a strip of n_rows
        rows whose Q starts at q row `start`, written to `out`: views only, built once per strip position and
        shape (torch's slicing costs microseconds, and a strip has over a hundred products)."""
        key = (start, n_rows, out.data_ptr(), out.stride())
        if key not in self._steps_cache:
            steps, col = [], 0
            for v, u_sel, band in self.bands:
                n_u = u_sel.size
                for r0 in range(0, n_rows, self.block):
                    rows = min(self.block, n_rows - r0)
                    taps = self.size + rows - 1
                    product = self.scratch[: self.width * rows * n_u].view(self.width, rows * n_u)
                    # Q[v, r0 .. r0 + taps).T is a column-major view: BLAS reads it in place.
                    steps.append((self.q[v, start + r0: start + r0 + taps].T, band[:taps, : rows * n_u], product,
                                  product.view(self.width, rows, n_u), out[:, r0: r0 + rows, col: col + n_u]))
                col += n_u
            self._steps_cache[key] = steps
        return self._steps_cache[key]

    def __call__(self, y0: int, n_rows: int, out: torch.Tensor, absolute: bool) -> None:
        """Write into `out` (width, n_rows, mask.sum()) the masked DCT (or its absolute value) of every window
        centred in rows y0 .. y0 + n_rows - 1, coefficients in `order()`.

        Pixels are stored column by column (x, then y), the products' row order, so that each copy moves runs
        of one pixel's coefficients.
        """
        start = self._row_pass(y0, n_rows)
        for a, band, product, by_pixel, dst in self._steps(start, n_rows, out):
            torch.mm(a, band, out=product)
            if absolute:
                torch.abs(by_pixel, out=dst)
            else:
                dst.copy_(by_pixel)


def sliding_dct(image: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """DCT-II (orthonormal) of the size x size window centred at every pixel, mirror-padded at the borders.

    Returns (H, W, n) float64: the coefficients selected by `mask` (default: all), in row-major (u, v) order.
    """
    if size % 2 != 1 or size < 1:
        raise ConfigError(f"sliding_dct: window size {size} must be a positive odd number")
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones((size, size), bool) if mask is None else np.asarray(mask, bool)
    h, w = image.shape
    dct = _StripDCT(torch.from_numpy(_pad(image, size // 2)), size, size // 2, w, mask, h)
    out = torch.empty((w, h, int(mask.sum())), dtype=torch.float64)
    dct(0, h, out, absolute=False)
    # Back to (y, x) pixels and row-major (u, v) coefficients.
    return out.permute(1, 0, 2).numpy()[..., np.argsort(dct.order())]


def _smallest_sorted(values: np.ndarray, k: int) -> np.ndarray:
    """(n, k): the k smallest of each row of non-negative float32 `values` (partitioned in place), ascending.

    Non-negative float32 values order like their bit patterns read as int32, and numpy partitions integers
    faster; the values selected are bit-for-bit the same.
    """
    bits = values.view(np.int32)
    if k < bits.shape[1]:
        bits.partition(k - 1, axis=1)
    return np.sort(bits[:, :k], axis=1).view(np.float32)


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
    padded = torch.from_numpy(_pad(np.asarray(gradient, dtype=np.float32), radius))
    strip = max(1, min(h, STRIP_BYTES // (4 * w * total)))
    dcts = [_StripDCT(padded, s, radius, w, m, strip) for s, m in zip(sizes, masks)]
    layers = np.empty((h, w, n_layers), np.float32)
    storage = torch.empty(w * strip * total)
    for y0 in range(0, h, strip):
        n_rows = min(strip, h - y0)
        coef = storage[: w * n_rows * total].view(w, n_rows, total)  # pixels (x, y)
        col = 0
        for dct, c in zip(dcts, counts):
            dct(y0, n_rows, coef[:, :, col: col + c], absolute=True)
            col += c
        smallest = _smallest_sorted(coef.numpy().reshape(w * n_rows, total), n_layers)
        layers[y0: y0 + n_rows] = smallest.reshape(w, n_rows, n_layers).transpose(1, 0, 2)
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
    # Many mid-sized matrix products: on a shared, busy machine a second BLAS thread costs more than it gains.
    with torch_threads(1), threadpool_limits(limits=1, user_api="blas"):
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
