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

import functools
import math
import mmap

import numpy as np
import torch
from scipy import fft, ndimage
from skimage.filters.rank import entropy
from threadpoolctl import threadpool_limits

from mdbd.baselines.common import check_image, downscaled_shape, finish_map, min_max, resize_to, to_gray
from mdbd.errors import ConfigError

WINDOW_SIZES = (7, 15, 31, 63)
#: Bytes of DCT coefficients held at once per strip of rows (the memory bound).
STRIP_BYTES = 96 * 2**20


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


def _huge_page_buffer(n: int) -> np.ndarray:
    """n float32 in anonymous memory advised to use huge pages: the strip buffers are written and read with
    strides of tens of KB, where 4 KB pages miss the TLB on almost every access."""
    try:
        memory = mmap.mmap(-1, 4 * max(1, n))
        memory.madvise(mmap.MADV_HUGEPAGE)
    except (AttributeError, OSError, ValueError):  # no madvise or no MADV_HUGEPAGE here: ordinary pages
        return np.empty(n, np.float32)
    return np.frombuffer(memory, np.float32, count=n)


class _StripDCT:
    """Masked sliding DCT of one window size, strip of rows by strip of rows.

    `padded` is the image padded by `radius` >= size // 2 on every side. The row pass computes, for every
    column frequency v, Q[v, y, x] = sum_b G[y, x + b] D[v, b] as one wide matrix product, and keeps it between
    consecutive strips, so the rows their windows share are transformed once. The column pass gives, for each
    v, the row frequencies u that pair with it (mask[u, v]) for `block` output rows at once through a banded
    matrix, band[r + a, (r, u)] = D[u, a]: product[x, (r, u)] = sum_t Q[v, y + t, x] band[t, (r, u)]. One tall
    product instead of `block` thin ones keeps BLAS efficient; the band's zeros cost (block - 1) / size extra.
    """

    def __init__(self, padded: torch.Tensor, size: int, radius: int, width: int, mask: np.ndarray,
                 dct: np.ndarray, max_rows: int, block: int):
        self.padded, self.size, self.width, self.block = padded, size, width, block
        self.off = radius - size // 2
        self.dct = torch.from_numpy(dct)
        taps = size + block - 1
        self.bands = []  # (v, u that pair with v, band (taps, block * len(u))), one per column frequency
        for v in range(size):
            u_sel = np.flatnonzero(mask[:, v])
            if u_sel.size:
                band = np.zeros((taps, block, u_sel.size), dct.dtype)
                for r in range(block):
                    band[r: r + size, r] = dct[u_sel].T
                self.bands.append((v, u_sel, torch.from_numpy(band.reshape(taps, -1))))
        self.lens = [u.size for _, u, _ in self.bands]
        self.q = torch.empty((size, max_rows + size - 1, width), dtype=padded.dtype)
        self.q_first, self.q_rows = 0, 0  # window-top rows held in self.q

    def _row_pass(self, y0: int, n_rows: int) -> None:
        """Make self.q hold Q for the windows centred in rows y0 .. y0 + n_rows - 1, reusing what it holds."""
        size, off = self.size, self.off
        need = n_rows + size - 1
        kept = 0
        if self.q_first <= y0 < self.q_first + self.q_rows:
            kept = min(need, self.q_first + self.q_rows - y0)
            if y0 > self.q_first:
                self.q[:, :kept] = self.q[:, y0 - self.q_first: y0 - self.q_first + kept].clone()
        first, n = y0 + kept, need - kept
        sub = self.padded[off + first: off + first + n, off: off + self.width + size - 1]
        # One shifted copy of the rows per tap b (contiguous along x), then one wide product for all v.
        shifted = sub.unfold(1, size, 1).permute(2, 0, 1).contiguous()
        self.q[:, kept: need] = (self.dct @ shifted.view(size, -1)).view(size, n, self.width)
        self.q_first, self.q_rows = y0, need

    def products(self, y0: int, n_rows: int):
        """For the strip of rows y0 .. y0 + n_rows - 1, yield (chunk, r0, a, band): a @ band is chunk's
        (x, (r, u)) block for strip rows r0 .. r0 + rows (a is a column-major view: BLAS reads it in place)."""
        self._row_pass(y0, n_rows)
        for chunk, (v, u_sel, band) in enumerate(self.bands):
            for r0 in range(0, n_rows, self.block):
                taps = self.size + min(self.block, n_rows - r0) - 1
                yield chunk, r0, self.q[v, r0: r0 + taps].T, band[:taps, : (taps - self.size + 1) * u_sel.size]

    def write(self, y0: int, n_rows: int, buffer: torch.Tensor, starts: np.ndarray) -> None:
        """Write the strip's coefficients into a chunk buffer (see `_Chunks`), this size's chunks at starts."""
        for chunk, r0, a, band in self.products(y0, n_rows):
            col = n_rows * int(starts[chunk]) + r0 * self.lens[chunk]
            torch.mm(a, band, out=buffer[:, col: col + band.shape[1]])


class _Chunks:
    """Where a strip's coefficients lie in its chunk buffer, (width, rows * total) for `rows` image rows.

    Chunk c holds lens[c] coefficients of every pixel: those of one window size and one column frequency v.
    Pixel (x, r) finds them at buffer[x, rows * starts[c] + r * lens[c] + (0 .. lens[c])], so a matrix product
    writes a chunk for several rows at once, straight into the buffer. In arrays gathered from a strip, pixel
    (x, r) is row x * rows + r.
    """

    def __init__(self, lens: list[int]):
        self.lens = np.asarray(lens, np.int64)
        self.starts = np.concatenate([[0], np.cumsum(self.lens)[:-1]]).astype(np.int64)
        self.total = int(self.lens.sum())


def sliding_dct(image: np.ndarray, size: int, mask: np.ndarray | None = None) -> np.ndarray:
    """DCT-II (orthonormal) of the size x size window centred at every pixel, mirror-padded at the borders.

    Returns (H, W, n) float64: the coefficients selected by `mask` (default: all), in row-major (u, v) order.
    """
    if size % 2 != 1 or size < 1:
        raise ConfigError(f"sliding_dct: window size {size} must be a positive odd number")
    image = np.asarray(image, dtype=np.float64)
    mask = np.ones((size, size), bool) if mask is None else np.asarray(mask, bool)
    h, w = image.shape
    dct = _StripDCT(torch.from_numpy(_pad(image, size // 2)), size, size // 2, w, mask, dct_matrix(size), h,
                    min(h, ROWS_PER_PRODUCT))
    chunks = _Chunks(dct.lens)
    buffer = torch.empty((w, h * chunks.total), dtype=torch.float64)
    dct.write(0, h, buffer, chunks.starts)
    buffer = buffer.numpy()
    out = np.empty((h, w, int(mask.sum())))
    flat = np.flatnonzero(mask.ravel())  # row-major (u, v) positions of the selected coefficients
    for (v, u_sel, _), start, n_u in zip(dct.bands, chunks.starts, chunks.lens):
        chunk = buffer[:, h * start: h * (start + n_u)].reshape(w, h, n_u).transpose(1, 0, 2)
        out[..., np.searchsorted(flat, u_sel * size + v)] = chunk
    return out


# -- Selecting the smallest magnitudes ---------------------------------------------------------------------
# Gathering a pixel's coefficients from ~100 chunks, or keeping the few below a bound, is many short loops,
# too slow as array operations: these three kernels are compiled with numba (a pymatting dependency) on first
# use. The selections themselves are numpy partitions, which are vectorised.

def _gather_abs(buffer, rows, starts, lens, x0, x1, out):  # pragma: no cover - runs compiled
    """out[(x - x0) * rows + r] = |coefficients| of pixel (x, r) of a strip's chunk buffer, for x0 <= x < x1.

    Chunk by chunk, so the buffer is read in order while a column's `rows` output rows stay in cache. Unsigned
    indices: numba then skips negative-index wraparound and the copy loops vectorise.
    """
    u = np.uint64
    for x in range(x0, x1):
        p = u((x - x0) * rows)
        m = u(0)
        for c in range(lens.size):
            n = u(lens[c])
            base = u(rows * starts[c])
            for r in range(u(rows)):
                for j in range(n):
                    out[p + r, m + j] = abs(buffer[x, base + r * n + j])
            m += n


def _append_below(product, strip_rows, r0, n_u, bounds, cand, counts):  # pragma: no cover - runs compiled
    """product (width, rows * n_u): coefficients (x, (r, u)) of strip rows r0 .. r0 + rows. Append to cand[i]
    (pixel i = x * strip_rows + r0 + r), from counts[i] on, the |values| strictly below bounds[i]; counts keep
    counting past cand's width (an overflow the caller handles)."""
    u = np.uint64
    cap = u(cand.shape[1])
    for x in range(product.shape[0]):
        src = product[x]
        for r in range(product.shape[1] // n_u):
            i = x * strip_rows + r0 + r
            row = cand[i]
            bound = bounds[i]
            m = u(counts[i])
            base = u(r * n_u)
            for j in range(u(n_u)):
                value = abs(src[base + j])
                if m < cap:
                    row[m] = value
                m += u(value < bound)  # branch-free: most values are above the bound
            counts[i] = m


def _pad_rows(cand, counts):  # pragma: no cover - runs compiled
    """Fill cand[i, counts[i]:longest] with +inf, longest = min(cand.shape[1], max(counts)); return longest."""
    longest = min(cand.shape[1], counts.max())
    for i in range(cand.shape[0]):
        for j in range(counts[i], longest):
            cand[i, j] = np.inf
    return longest


@functools.cache
def _compiled(name: str):
    import numba

    return numba.njit(cache=True, nogil=True)(globals()[name])


def _smallest_sorted(values: np.ndarray, k: int) -> np.ndarray:
    """(n, k): the k smallest of each row of non-negative float32 `values` (partitioned in place), ascending.

    Non-negative float32 values order like their bit patterns read as int32, and numpy partitions integers
    faster; the values selected are bit-for-bit the same.
    """
    bits = values.view(np.int32)
    if k < bits.shape[1]:
        bits.partition(k - 1, axis=1)
    return np.sort(bits[:, :k], axis=1).view(np.float32)


def _pixel_smallest(padded: np.ndarray, sizes: tuple[int, ...], radius: int, y: int, x: int, k: int) -> np.ndarray:
    """The k smallest |high-frequency DCT| values at one pixel, straight from the definition (the rare pixel
    with more candidates than the strip arrays hold)."""
    values = []
    for s in sizes:
        top, left = y + radius - s // 2, x + radius - s // 2
        d = dct_matrix(s).astype(np.float32)
        values.append(np.abs(d @ padded[top: top + s, left: left + s] @ d.T)[high_frequency_mask(s)])
    return np.sort(np.concatenate(values))[:k]


#: Output rows per matrix product of the column pass (see `_StripDCT`).
ROWS_PER_PRODUCT = 16
#: Pixels per gathered batch (bounds that scratch array).
_BATCH_PIXELS = 2048
#: Candidates a pixel can hold beyond n_layers, as a share of a window's coefficients; a pixel with more (none
#: on real images so far) is recomputed from the definition.
CANDIDATE_SHARE = 0.5
_BOUND = True


def sorted_layers(gradient: np.ndarray, sizes: tuple[int, ...] = WINDOW_SIZES,
                  n_layers: int | None = None) -> np.ndarray:
    """(H, W, n_layers) float32: per pixel, the n_layers smallest |high-frequency DCT| values over all window
    sizes, in ascending order.

    Strip by strip of rows. The smallest windows (as few as hold n_layers values together) go to a chunk buffer
    and their n_layers smallest per pixel are selected. The largest of those bounds the answer, so of each
    larger window (taken in increasing size) only the coefficients below the bound are kept, straight from each
    matrix product: a few hundred of the 2016 of the 63 x 63 window. A selection over the kept values and the
    n_layers so far gives the next, tighter bound, and after the largest window, the layers.
    """
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
    k = n_layers
    largest = int(np.argmax(counts))
    appended = [largest] if _BOUND and len(sizes) > 1 and total - counts[largest] >= k else []
    in_buffer = [i for i in range(len(sizes)) if i not in appended]
    n_buffer = sum(counts[i] for i in in_buffer)
    cap = k + max([int(CANDIDATE_SHARE * counts[i]) for i in appended], default=0)
    strip = max(1, min(h, STRIP_BYTES // (4 * w * (n_buffer + (cap if appended else 0)))))
    if strip > ROWS_PER_PRODUCT:
        strip -= strip % ROWS_PER_PRODUCT  # whole products
    block = min(strip, ROWS_PER_PRODUCT)
    radius = max(sizes) // 2
    padded_np = _pad(np.asarray(gradient, dtype=np.float32), radius)
    padded = torch.from_numpy(padded_np)
    dcts = [_StripDCT(padded, s, radius, w, m, dct_matrix(s).astype(np.float32), strip, block)
            for s, m in zip(sizes, masks)]
    chunks = _Chunks([n for i in in_buffer for n in dcts[i].lens])
    starts, first = {}, 0
    for i in in_buffer:
        starts[i] = chunks.starts[first: first + len(dcts[i].lens)]
        first += len(dcts[i].lens)
    gather = _compiled("_gather_abs")
    storage = _huge_page_buffer(w * strip * n_buffer)
    step = max(1, _BATCH_PIXELS // strip)
    gathered = np.empty((step * strip, n_buffer), np.float32)
    if appended:
        append, pad = _compiled("_append_below"), _compiled("_pad_rows")
        cand_storage = _huge_page_buffer(w * strip * cap)
        kept_storage = np.empty(w * strip, np.int64)
        scratch = torch.empty(w * max(band.shape[1] for i in appended for _, _, band in dcts[i].bands))
    layers = np.empty((h, w, k), np.float32)
    for y0 in range(0, h, strip):
        n_rows = min(strip, h - y0)
        n_pixels = w * n_rows
        buffer = torch.from_numpy(storage[: n_pixels * n_buffer]).view(w, n_rows * n_buffer)
        for i in in_buffer:
            dcts[i].write(y0, n_rows, buffer, starts[i])
        cand = cand_storage[: n_pixels * cap].reshape(n_pixels, cap) if appended else None
        smallest = cand[:, :k] if appended else np.empty((n_pixels, k), np.float32)
        for x0 in range(0, w, step):
            x1 = min(w, x0 + step)
            batch = gathered[: (x1 - x0) * n_rows]
            gather(buffer.numpy(), n_rows, chunks.starts, chunks.lens, x0, x1, batch)
            smallest[x0 * n_rows: x1 * n_rows] = _smallest_sorted(batch, k)
        overflow = np.zeros(n_pixels, bool)
        for i in appended:
            # smallest = cand[:, :k] holds the k smallest so far, their largest (the bound) in column k - 1.
            bounds = np.ascontiguousarray(cand[:, k - 1])
            kept = kept_storage[:n_pixels]
            kept[:] = k
            for chunk, r0, a, band in dcts[i].products(y0, n_rows):
                product = scratch[: w * band.shape[1]].view(w, band.shape[1])
                torch.mm(a, band, out=product)
                append(product.numpy(), n_rows, r0, dcts[i].lens[chunk], bounds, cand, kept)
            overflow |= kept > cap
            longest = pad(cand, kept)
            if i == appended[-1]:
                smallest = _smallest_sorted(cand[:, :longest], k)
            else:  # the k smallest so far, unordered but with the k-th in column k - 1
                cand[:, :longest].view(np.int32).partition(k - 1, axis=1)
        for p in np.flatnonzero(overflow):  # rare: more candidates than cand holds
            smallest[p] = _pixel_smallest(padded_np, sizes, radius, y0 + p % n_rows, p // n_rows, k)
        layers[y0: y0 + n_rows] = smallest.reshape(w, n_rows, k).transpose(1, 0, 2)
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
