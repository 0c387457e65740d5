"""The plain sharpness map: local energy of the Laplacian of the (Gaussian-smoothed) grey image.

In-focus regions keep fine detail, so the Laplacian (a second-derivative, high-pass operator) has more
energy there; the local root-mean-square of the Laplacian is the classic "variance of Laplacian" focus
measure computed in a sliding window.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from mdbd.baselines.common import check_image, finish_map, to_gray
from mdbd.core.errors import ConfigError


def laplacian_energy_map(image_u8: np.ndarray, *, sigma: float = 1.0, window: int = 15,
                         robust_percentile: float = 99.0) -> np.ndarray:
    """Local RMS of the Laplacian of Gaussian-smoothed grey levels: float32 (H, W) in [0, 1], high = in focus.

    sigma: Gaussian smoothing before the Laplacian (suppresses noise and JPEG blocking; 0 = none);
    window: side of the square averaging window; robust_percentile: this percentile of the RMS maps to 1
    (values above are clipped; 100 = plain division by the maximum).
    """
    image_u8 = check_image(image_u8)
    if sigma < 0 or window < 1 or not 0 < robust_percentile <= 100:
        raise ConfigError(f"laplacian_energy_map: need sigma >= 0, window >= 1 and 0 < robust_percentile <= 100 "
                          f"(got sigma={sigma}, window={window}, robust_percentile={robust_percentile})")
    gray = to_gray(image_u8)
    if sigma > 0:
        gray = ndimage.gaussian_filter(gray, sigma, mode="nearest")
    energy = ndimage.uniform_filter(ndimage.laplace(gray, mode="nearest") ** 2, size=int(window), mode="nearest")
    rms = np.sqrt(np.maximum(energy, 0.0))  # rounding in the box filter can leave tiny negatives
    # Robust scaling: the energy is heavy-tailed, and a plain min-max would squeeze most pixels into the
    # lowest few of the 256 levels that the 8-bit maps and the F-measure thresholds use.
    scale = float(np.percentile(rms, robust_percentile))
    return finish_map(np.clip(rms / scale, 0.0, 1.0) if scale > 1e-12 else np.zeros_like(rms),
                      image_u8.shape[:2], normalise=False)
