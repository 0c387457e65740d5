"""Fixed, named real CUHK pairs for tests (nothing in the suite scales with the size of $MDBD_SHARED_DATA), in a
module of their own: `from conftest import ...` would find tests/nbval/conftest.py when both are loaded.
0016, 0080, 0088 and 0100 have an upper-case .JPG extension in the official archive."""

CUHK_TRAIN_IDS = tuple(f"out_of_focus{n:04d}" for n in (11, 16, 31, 35, 80, 88, 100, 150, 223, 284, 300, 450))
CUHK_TEST_IDS = tuple(f"out_of_focus{n:04d}" for n in (605, 640, 670, 704))
