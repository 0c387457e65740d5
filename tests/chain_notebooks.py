"""Test-only notebooks for the chain runner (mdbd.chain.reproduce): a kernelspec, the tagged parameters cell, then
cells."""

from __future__ import annotations

from pathlib import Path

import nbformat


def write_chain_notebook(folder: Path, cells: list[str], name: str = "01_data") -> Path:
    """`folder`/`name`.ipynb: the parameters cell `profile = "laptop"` (tagged as papermill wants it), then one code
    cell per source in `cells`. The folder is created."""
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "laptop"')
    params.metadata["tags"] = ["parameters"]
    book.cells = [params, *(nbformat.v4.new_code_cell(source) for source in cells)]
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{name}.ipynb"
    nbformat.write(book, path)
    return path
