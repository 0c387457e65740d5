"""Classical defocus-blur-detection baselines, re-implemented from their papers and vectorised.

Every baseline maps an RGB uint8 image (H, W, 3) to a float32 (H, W) sharpness map in [0, 1] at the image's
size, HIGH = IN FOCUS:

- `hifst_map`: HiFST (Golestaneh & Karam, CVPR 2017);
- `lbp_map`: LBP-based segmentation (Yi & Eramian, TIP 2016);
- `laplacian_energy_map`: local energy of the Laplacian, the plain sharpness-map baseline.

`run_baseline(name, image_paths, ...)` runs one over files with an on-disk cache.
"""

from mdbd.baselines.hifst import domain_transform_filter, hifst_map, sliding_dct
from mdbd.baselines.laplacian import laplacian_energy_map
from mdbd.baselines.lbp import lbp_codes, lbp_map, lbp_sharpness
from mdbd.baselines.run import BASELINES, default_cache_dir, load_rgb, run_baseline, save_map_png

__all__ = [
    "BASELINES",
    "default_cache_dir",
    "domain_transform_filter",
    "hifst_map",
    "laplacian_energy_map",
    "lbp_codes",
    "lbp_map",
    "lbp_sharpness",
    "load_rgb",
    "run_baseline",
    "save_map_png",
    "sliding_dct",
]
