"""Names every layer shares, defined once here (torch- and numpy-free, importing nothing of mdbd): the datasets a run
can name and what white means in a mask or map file. Modules that check or offer these import them from here.
"""

from __future__ import annotations

#: the datasets a run can name: the embedded synthetic benchmark (the default), Shi's CUHK, DUT, or any folder of
#: image/mask pairs (mdbd.data.readers.open_folder); the order of CLI choices and error messages
DATASETS = ("synthetic", "cuhk", "dut", "folder")
#: the real datasets of the paper's tables (Table I, Fig. 4): the ones whose quoted numbers sit beside ours
REAL_DATASETS = ("cuhk", "dut")
#: what white means in a stored mask or map (8-bit 255, 1-bit 1): in focus, or blurred (Shi's CUHK masks, DBDF's
#: published maps). Inside mdbd every mask and map is converted on load to high = in focus.
POLARITIES = ("infocus_white", "blur_white")
