"""LBP-based defocus segmentation, re-implemented from Yi & Eramian, "LBP-based segmentation of defocus blur"
(IEEE TIP 2016):

1. thresholded LBP: neighbour bit b_p = [n_p - n_c >= T_LBP] (P = 8, R = 1, bilinear sampling, grey levels
   in [0, 1], T_LBP = 0.016), mapped to rotation-invariant uniform codes 0..8 (9 = non-uniform);
2. sharpness m_LBP = fraction of codes 6, 7, 8, 9 in an s x s window, s = 11, 15, 21, min-max normalised;
3. per scale, a trimap from double thresholding (sharp where m > T_m1 = 0.3, blurred where m < T_m2 = 0.01)
   and closed-form matting (Levin et al., pymatting's `estimate_alpha_cf`) to propagate it along image edges;
4. multi-scale inference: a three-layer grid MRF (4-neighbours within a scale, same pixel between adjacent
   scales, Potts weight 0.5, unary costs |h - x| on the jointly standardised alpha maps) solved by loopy
   belief propagation; the map is P(sharp) at the largest scale.

Everything is whole-array numpy, except belief propagation: its message updates are float32 torch tensors
updated in place (torch's sigmoid and log are vectorised, numpy's transcendental functions are not on AVX2).
Matting is solved on a downscaled copy (as the authors' coarse-to-fine release does) and brought back with a
guided (locally linear) upsampling.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from scipy import ndimage

from mdbd.baselines.common import check_image, downscaled_shape, finish_map, min_max, resize_to, to_gray
from mdbd.core.errors import ConfigError

WINDOW_SIZES = (11, 15, 21)
T_LBP = 0.016
T_M1 = 0.3
T_M2 = 0.01
SHARP_CODES_FROM = 6  # codes 6, 7, 8 and 9 (non-uniform) are rare in blurred patches

_DIAG = math.sqrt(2.0) / 2.0


def lbp_codes(gray: np.ndarray, threshold: float = T_LBP) -> np.ndarray:
    """Rotation-invariant uniform LBP(8, 1) codes (uint8, 0..9) with the sign test n_p - n_c >= threshold."""
    g = np.asarray(gray, dtype=np.float64)
    p = np.pad(g, 1, mode="edge")
    h, w = g.shape

    def at(dy: int, dx: int) -> np.ndarray:
        return p[1 + dy: 1 + dy + h, 1 + dx: 1 + dx + w]

    def diagonal(dy: int, dx: int) -> np.ndarray:
        # Bilinear sample at (dy, dx) * sqrt(2)/2 from the 2 x 2 block of grid points around it.
        f = _DIAG
        return ((1 - f) * (1 - f) * g + (1 - f) * f * at(0, dx) + f * (1 - f) * at(dy, 0) + f * f * at(dy, dx))

    # Neighbours in circular order (angle 0, 45, ..., 315 degrees; y grows downwards).
    neighbours = (at(0, 1), diagonal(-1, 1), at(-1, 0), diagonal(-1, -1),
                  at(0, -1), diagonal(1, -1), at(1, 0), diagonal(1, 1))
    bits = np.stack([(n - g) >= threshold for n in neighbours]).astype(np.uint8)
    transitions = np.abs(bits - np.roll(bits, 1, axis=0).astype(np.int16)).sum(axis=0)
    codes = bits.sum(axis=0).astype(np.uint8)
    codes[transitions > 2] = 9
    return codes


def lbp_sharpness(gray: np.ndarray, window: int, threshold: float = T_LBP) -> np.ndarray:
    """m_LBP: fraction of codes 6..9 in the window x window neighbourhood, min-max normalised to [0, 1]."""
    if window < 1:
        raise ConfigError(f"LBP window size {window}: must be a positive integer")
    sharp = (lbp_codes(gray, threshold) >= SHARP_CODES_FROM).astype(np.float64)
    return min_max(ndimage.uniform_filter(sharp, size=int(window), mode="nearest"))


def trimap_from_sharpness(sharpness: np.ndarray, t_sharp: float = T_M1, t_blur: float = T_M2) -> np.ndarray:
    """Trimap for matting: 1 (sharp) where m > t_sharp, 0 (blurred) where m < t_blur, 0.5 elsewhere."""
    trimap = np.full(sharpness.shape, 0.5)
    trimap[sharpness > t_sharp] = 1.0
    trimap[sharpness < t_blur] = 0.0
    return trimap


def _box(x: np.ndarray, radius: int) -> np.ndarray:
    size = (2 * radius + 1, 2 * radius + 1) + (1,) * (x.ndim - 2)
    return ndimage.uniform_filter(x, size=size, mode="nearest")


def guided_upsample(alpha: np.ndarray, guide: np.ndarray, guide_fine: np.ndarray, radius: int = 1,
                    eps: float = 1e-4) -> np.ndarray:
    """Fit alpha ~ a . I + b locally on the coarse RGB guide, upsample (a, b), apply them to the fine guide."""
    mean_i = _box(guide, radius)
    mean_a = _box(alpha, radius)
    cov_ia = _box(guide * alpha[..., None], radius) - mean_i * mean_a[..., None]
    outer = guide[..., :, None] * guide[..., None, :]
    cov_ii = _box(outer.reshape(*guide.shape[:2], 9), radius).reshape(outer.shape)
    cov_ii = cov_ii - mean_i[..., :, None] * mean_i[..., None, :] + eps * np.eye(3)
    a = np.linalg.solve(cov_ii, cov_ia[..., None])[..., 0]
    b = mean_a - (a * mean_i).sum(axis=-1)
    a, b = _box(a, radius), _box(b, radius)
    shape = guide_fine.shape[:2]
    return np.clip((resize_to(a, shape) * guide_fine).sum(axis=-1) + resize_to(b, shape), 0.0, 1.0)


def matte(rgb: np.ndarray, trimap: np.ndarray, scale: float = 0.25) -> np.ndarray:
    """Closed-form matting of `trimap` on the RGB image (float in [0, 1]), solved at `scale` of the size."""
    from pymatting import estimate_alpha_cf

    is_fg, is_bg = trimap >= 0.9, trimap <= 0.1
    if not is_fg.any() or not is_bg.any():
        return trimap  # nothing to propagate from one of the two sides
    shape = trimap.shape
    coarse = (max(8, round(shape[0] * scale)), max(8, round(shape[1] * scale))) if scale < 1 else shape
    small_rgb = resize_to(rgb, coarse)
    # A coarse pixel is a constraint when most of the fine pixels under it are.
    fg = resize_to(is_fg.astype(np.float64), coarse) >= 0.5
    bg = resize_to(is_bg.astype(np.float64), coarse) >= 0.5
    small_trimap = np.full(coarse, 0.5)
    small_trimap[fg] = 1.0
    small_trimap[bg & ~fg] = 0.0
    if not (small_trimap == 1).any() or not (small_trimap == 0).any() or (small_trimap == 0.5).sum() == 0:
        alpha = small_trimap
    else:
        alpha = estimate_alpha_cf(np.ascontiguousarray(small_rgb), small_trimap)
    if coarse == shape:
        return np.clip(alpha, 0.0, 1.0)
    return guided_upsample(alpha, small_rgb, rgb)


def _potts_message(u: torch.Tensor, weight: float, scratch: torch.Tensor | None = None) -> torch.Tensor:
    """Log-ratio message sent by a node with log-ratio u (its evidence minus the receiver's message) over a
    binary Potts edge (potential 1 if equal, exp(-weight) if not): log((e^u + e^-w) / (e^(u-w) + 1)).

    Computed in place on the float32 tensor `u` (and returned) as log((c + a s) / (1 - a s)) with s = sigmoid(u),
    c = e^-w, a = 1 - c: the same ratio divided through by 1 + e^u, so nothing overflows, and torch's sigmoid and
    log are vectorised (its tanh and atanh, like numpy's, are not). `scratch`: a tensor of u's shape to reuse.
    """
    c = math.exp(-weight)
    a = 1.0 - c
    u.sigmoid_()
    denominator = torch.mul(u, -a, out=scratch) if scratch is not None else u * -a
    denominator.add_(1.0)
    return u.mul_(a).add_(c).div_(denominator).log_()


def multiscale_inference(maps: list[np.ndarray], smoothness: float = 0.5, max_iter: int = 60,
                         tol: float = 1e-3) -> np.ndarray:
    """Loopy belief propagation on a stack of grid MRFs (one layer per scale, linked at equal pixels).

    Unary potentials exp(-|1 - x|) (sharp) and exp(-|x|) (blurred) on the jointly standardised maps.
    Returns P(sharp) for every layer, shape (n_scales, H, W).
    """
    x = np.stack([np.asarray(m, dtype=np.float64) for m in maps])
    std = x.std(ddof=1) if x.size > 1 else 0.0
    x = (x - x.mean()) / std if std > 1e-12 else np.zeros_like(x)
    prior = torch.from_numpy((np.abs(x) - np.abs(1.0 - x)).astype(np.float32))  # log phi(sharp) - log phi(blurred)
    # Messages as one float32 tensor: index 2a is what a node receives from its predecessor along axis a (scale,
    # row, column), 2a + 1 from its successor. Two buffers alternate; the slots a message never reaches (the
    # first node along its axis has no predecessor, the last no successor) stay zero in both.
    incoming = torch.zeros((6,) + prior.shape)
    new = torch.zeros_like(incoming)
    belief = torch.empty_like(prior)
    scratch = torch.empty_like(prior)
    for _ in range(max_iter):
        torch.sum(incoming, dim=0, out=belief).add_(prior)
        for a in range(3):
            n = prior.shape[a]
            head, tail = belief.narrow(a, 0, n - 1), belief.narrow(a, 1, n - 1)
            fwd, bwd = new[2 * a].narrow(a, 1, n - 1), new[2 * a + 1].narrow(a, 0, n - 1)
            tmp = scratch.narrow(a, 0, n - 1)
            # Sender excludes what the receiver told it (sum-product), then passes through the Potts edge.
            _potts_message(torch.sub(head, incoming[2 * a + 1].narrow(a, 0, n - 1), out=fwd), smoothness, tmp)
            _potts_message(torch.sub(tail, incoming[2 * a].narrow(a, 1, n - 1), out=bwd), smoothness, tmp)
        # Largest change of any message, from the extremes of old - new, computed in the old buffer (it is
        # overwritten next; its never-reached slots stay 0 - 0 = 0) with no separate |.| pass.
        lo, hi = torch.aminmax(incoming.sub_(new))
        incoming, new = new, incoming
        if max(-float(lo), float(hi)) < tol:
            break
    belief = (prior + incoming.sum(dim=0)).numpy()
    return 1.0 / (1.0 + np.exp(-belief))


def lbp_map(image_u8: np.ndarray, *, window_sizes: tuple[int, ...] = WINDOW_SIZES, threshold: float = T_LBP,
            t_sharp: float = T_M1, t_blur: float = T_M2, matting_scale: float = 0.25, smoothness: float = 0.5,
            max_side: int | None = None) -> np.ndarray:
    """LBP sharpness map (Yi & Eramian 2016): float32 (H, W) in [0, 1], high = in focus.

    matting_scale: the matting is solved at this fraction of the image size (0.25 = the authors' release,
    1 = native); max_side: compute on a copy whose longer side is at most this (None = native).
    """
    image_u8 = check_image(image_u8)
    if not 0 < matting_scale <= 1:
        raise ConfigError(f"matting_scale={matting_scale}: must be in (0, 1]")
    if not window_sizes:
        raise ConfigError("LBP window_sizes: need at least one window size")
    shape = image_u8.shape[:2]
    rgb = image_u8.astype(np.float64) / 255.0
    work_shape = downscaled_shape(shape, max_side)
    if work_shape != shape:
        rgb = np.clip(resize_to(rgb, work_shape), 0.0, 1.0)
    gray = to_gray(rgb * 255.0)
    alphas = [matte(rgb, trimap_from_sharpness(lbp_sharpness(gray, s, threshold), t_sharp, t_blur), matting_scale)
              for s in window_sizes]
    sharp_prob = multiscale_inference(alphas, smoothness)[-1]
    return finish_map(sharp_prob, shape, normalise=False)
