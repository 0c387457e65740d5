"""mdbd: a reproduction study of MultiANet (Jiang et al., MMSP 2020) for defocus blur detection.

Internal conventions, everywhere in the package:
- images are RGB uint8 (H, W, 3) on disk and float in [0, 1] inside the model;
- masks and predictions: 1 = IN FOCUS, 0 = blurred (CUHK ground truth is inverted on load).
"""

__version__ = "0.1.0"
