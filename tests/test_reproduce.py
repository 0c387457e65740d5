"""The papermill chain runner: parameters injected, failures named by notebook and cell."""

import nbformat
import pytest

from chain_notebooks import write_chain_notebook
from mdbd.chain import reproduce
from mdbd.core.errors import ConfigError


def test_every_notebook_of_the_chain_exists_with_a_tagged_parameters_cell_of_literals():
    import ast

    for name in reproduce.ALL_NOTEBOOKS:
        book = nbformat.read(reproduce.notebook_path(name), as_version=4)
        tagged = [c for c in book.cells if "parameters" in c.metadata.get("tags", [])]
        assert len(tagged) == 1, name
        tree = ast.parse(tagged[0].source)
        names = set()
        for stmt in tree.body:
            assert isinstance(stmt, ast.Assign), (name, ast.dump(stmt))
            assert isinstance(stmt.value, (ast.Constant, ast.List)), (name, ast.dump(stmt))
            names.add(stmt.targets[0].id)
        assert {"profile", "seed", "device"} <= names, name
        # thin notebooks: no function or class definitions, and no relative paths
        for cell in book.cells:
            if cell.cell_type == "code":
                assert "def " not in cell.source and "class " not in cell.source, name
                assert "../" not in cell.source, name


def test_the_extra_notebooks_run_by_name_or_after_the_chain_never_by_default(tmp_path):
    assert "08_cuhk_te1" not in reproduce.NOTEBOOKS and "08_cuhk_te1" in reproduce.EXTRA_NOTEBOOKS
    chain = reproduce.run_chain("smoke", out_dir=tmp_path / "chain", prepare_only=True, progress=False)
    assert [p.stem for p in chain.executed] == list(reproduce.NOTEBOOKS)
    both = reproduce.run_chain("smoke", out_dir=tmp_path / "both", prepare_only=True, progress=False, extras=True)
    assert [p.stem for p in both.executed] == list(reproduce.NOTEBOOKS) + ["08_cuhk_te1"]
    alone = reproduce.run_chain("smoke", ["08_cuhk_te1"], dataset="cuhk", data_root=str(tmp_path / "cuhk"),
                                out_dir=tmp_path / "alone", prepare_only=True, progress=False)
    book = nbformat.read(alone.executed[0], as_version=4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'dataset = "cuhk"' in injected[0].source
    with pytest.raises(ConfigError, match="09_nothing"):
        reproduce.run_chain("smoke", ["09_nothing"], out_dir=tmp_path / "bad", prepare_only=True, progress=False)


def test_prepare_only_injects_the_profile(tmp_path):
    result = reproduce.run_chain("smoke", ["01_data", "05_curves"], out_dir=tmp_path, prepare_only=True, progress=False)
    assert [p.name for p in result.executed] == ["01_data.ipynb", "05_curves.ipynb"]
    book = nbformat.read(tmp_path / "01_data.ipynb", as_version=4)
    injected = [c for c in book.cells if "injected-parameters" in c.metadata.get("tags", [])]
    assert len(injected) == 1 and 'profile = "smoke"' in injected[0].source


def test_prepare_only_injects_the_dataset_and_keeps_datasets_apart(tmp_path):
    real = reproduce.run_chain("smoke", ["02_train"], dataset="cuhk", data_root=str(tmp_path / "cuhk"),
                               prepare_only=True, progress=False)
    synthetic = reproduce.run_chain("smoke", ["02_train"], prepare_only=True, progress=False)
    assert real.executed[0].parent != synthetic.executed[0].parent
    assert real.executed[0].parent.name == "cuhk" and synthetic.executed[0].parent.name.startswith("synthetic")
    book = nbformat.read(real.executed[0], as_version=4)
    injected = next(c for c in book.cells if "injected-parameters" in c.metadata.get("tags", []))
    assert 'dataset = "cuhk"' in injected.source and str(tmp_path / "cuhk") in injected.source


def test_further_parameters_go_to_the_notebooks_that_declare_them(tmp_path):
    result = reproduce.run_chain("smoke", ["02_train", "05_curves"], out_dir=tmp_path, prepare_only=True,
                                 progress=False, params={"epochs": 3})
    sources = {p.stem: next(c.source for c in nbformat.read(p, as_version=4).cells
                            if "injected-parameters" in c.metadata.get("tags", [])) for p in result.executed}
    assert "epochs = 3" in sources["02_train"] and "epochs" not in sources["05_curves"]
    with pytest.raises(ConfigError, match="declared by none"):
        reproduce.run_chain("smoke", ["05_curves"], out_dir=tmp_path, prepare_only=True, params={"epochs": 3})


def test_bad_data_is_reported_before_any_notebook_runs(tmp_path):
    from mdbd.core.errors import DataError

    out = tmp_path / "executed"
    with pytest.raises(DataError, match="not found"):
        reproduce.run_chain("smoke", dataset="cuhk", data_root=str(tmp_path / "missing"), out_dir=out, progress=False)
    (tmp_path / "dut").mkdir()
    with pytest.raises(DataError, match="not a CUHK"):  # a folder that is not laid out as the dataset says
        reproduce.run_chain("smoke", dataset="cuhk", data_root=str(tmp_path / "dut"), out_dir=out, progress=False)
    assert not out.exists()


def test_unknown_notebook_or_profile():
    with pytest.raises(ConfigError, match="unknown notebook"):
        reproduce.run_chain("smoke", ["99_nothing"], prepare_only=True)
    with pytest.raises(ConfigError, match="unknown profile"):
        reproduce.run_chain("huge", prepare_only=True)


@pytest.mark.slow
def test_failure_names_the_notebook_and_the_cell(tmp_path, monkeypatch):
    folder = tmp_path / "notebooks"
    write_chain_notebook(folder, ["x = 1", "raise ValueError('boom ' + profile)"])
    monkeypatch.setattr(reproduce, "NOTEBOOKS_DIR", folder)
    with pytest.raises(reproduce.NotebookFailed) as info:
        reproduce.run_chain("smoke", ["01_data"], out_dir=tmp_path / "out", progress=False)
    message = str(info.value)
    assert "01_data.ipynb" in message and "ValueError: boom smoke" in message and "cell" in message
    assert (tmp_path / "out" / "01_data.ipynb").is_file()  # the executed copy with the traceback is kept


def test_executed_copies_keep_text_outputs_and_small_figures_and_drop_large_images(tmp_path):
    import nbformat

    from mdbd.chain.reproduce import SMALL_FIGURE_CHARS, drop_embedded_images

    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell("fig")
    large = "iVBORw0KGgo" + "A" * SMALL_FIGURE_CHARS
    cell.outputs = [nbformat.v4.new_output("display_data", data={"image/png": large, "text/plain": "<Figure>"}),
                    nbformat.v4.new_output("stream", name="stdout", text="max F 0.916\n"),
                    nbformat.v4.new_output("display_data", data={"image/png": "iVBORw0KGgo=", "text/plain": "<Small>",
                                                                 "application/pdf": "JVBERi0="})]
    nb.cells.append(cell)
    path = tmp_path / "nb.ipynb"
    nbformat.write(nb, path)
    drop_embedded_images(path)
    outputs = nbformat.read(path, as_version=4).cells[0].outputs
    assert "image/png" not in outputs[0]["data"] and outputs[0]["data"]["text/plain"] == "<Figure>"
    assert outputs[1]["text"] == "max F 0.916\n"
    assert outputs[2]["data"]["image/png"] == "iVBORw0KGgo=" and "application/pdf" not in outputs[2]["data"]


def test_cli_extras_flag_adds_the_extra_notebooks(tmp_path, capsys):
    from mdbd.cli import main

    assert main(["reproduce", "--profile", "smoke", "--extras", "--prepare-only", "--out", str(tmp_path)]) == 0
    # 09_fidelity runs by name only, never by --extras
    assert sorted(p.stem for p in tmp_path.glob("*.ipynb")) == sorted(reproduce.NOTEBOOKS + reproduce.EXTRA_NOTEBOOKS)


def test_executed_copies_of_a_run_with_further_parameters_sit_in_their_own_folder():
    # 03 with the paper's literal attention forms once overwrote the default run's executed 03_ablation.ipynb
    literal = {"attention_scale": "none", "spatial_gate": "sigmoid"}
    assert reproduce.params_folder(literal) == "attention-none_gate-sigmoid"  # the folder the tables' suffix names
    assert reproduce.params_folder({"epochs": 3, "spatial_gate": "sigmoid"}) == "gate-sigmoid_epochs-3"
    assert reproduce.params_folder({"candidates": []}) == "candidates-none"  # no brackets in a folder name
    assert reproduce.params_folder({"candidates": ["chain-e4", "chain-e6"]}) == "candidates-chain-e4+chain-e6"
    base = reproduce.executed_dir("laptop", "cuhk")
    assert reproduce.executed_dir("laptop", "cuhk", {}) == base
    assert reproduce.executed_dir("laptop", "cuhk", literal) == base / "attention-none_gate-sigmoid"


def _tiny_chain_notebook(folder):
    """A test-only 01_data: a heading, the parameters cell, two code cells under two sections."""
    book = nbformat.v4.new_notebook()
    book.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell('profile = "laptop"')
    params.metadata["tags"] = ["parameters"]
    book.cells = [nbformat.v4.new_markdown_cell("# Tiny\n## Setup"), params, nbformat.v4.new_code_cell("x = 1"),
                  nbformat.v4.new_markdown_cell("## Training the model"),
                  nbformat.v4.new_code_cell("# a comment first\ny = x + 1\nprint(profile, y)")]
    folder.mkdir()
    nbformat.write(book, folder / "01_data.ipynb")


@pytest.mark.slow
def test_progress_names_notebook_cells_and_times_and_quiet_silences_it(tmp_path, monkeypatch, capfd):
    import io

    _tiny_chain_notebook(tmp_path / "notebooks")
    monkeypatch.setattr(reproduce, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    stream = io.StringIO()  # not a terminal: one line per cell
    result = reproduce.run_chain("smoke", ["01_data"], out_dir=tmp_path / "out", progress_stream=stream)
    lines = stream.getvalue().splitlines()
    assert lines[0] == "[mdbd reproduce] 01_data (1/1, profile smoke; expected ~0.5 min) ..."
    cells = [line for line in lines if " cell " in line]
    # the parameters cell, papermill's injected one, then the two of the notebook, each with its section
    assert [c.split(" cell ")[1].split(":")[0] for c in cells] == ["1/4", "2/4", "3/4", "4/4"]
    assert cells[0].endswith("01_data cell 1/4: Setup | default parameters: profile = \"laptop\"")
    assert cells[1].endswith("01_data cell 2/4: Setup | injected parameters: profile = \"smoke\"")
    assert cells[3].endswith("01_data cell 4/4: Training the model | y = x + 1")  # the first line that is code
    assert lines[-1].startswith("[mdbd reproduce] 01_data done in ") and "expected ~0.5 min" in lines[-1]
    assert result.seconds["01_data"] > 0
    quiet = io.StringIO()
    reproduce.run_chain("smoke", ["01_data"], out_dir=tmp_path / "quiet", progress=False, progress_stream=quiet)
    assert quiet.getvalue() == ""
    captured = capfd.readouterr()  # the kernels' own stderr included (file descriptor level)
    assert "without encryption" not in captured.err and "[mdbd reproduce]" not in captured.out + captured.err
    assert not list(tmp_path.glob("**/kernel-ipc*"))  # the IPC sockets live in a private folder, removed


def test_progress_on_a_terminal_is_a_bar_and_the_times_compare_with_the_expected_ones():
    import io

    import nbformat as nbf

    stream = io.StringIO()
    progress = reproduce.ChainProgress("laptop", stream=stream, bar=True)
    progress.notebook_start("02_train", 2, 7)
    book = nbf.v4.new_notebook()
    book.cells = [nbf.v4.new_markdown_cell("## Train"), nbf.v4.new_code_cell("fit()"), nbf.v4.new_code_cell("")]
    progress.on_notebook_start(notebook=book)
    assert progress._pbar is not None and progress._pbar.total == 1  # empty cells are not counted
    progress.on_cell_start(cell=book.cells[1], cell_index=1)
    progress.on_cell_start(cell=book.cells[0], cell_index=0)  # a markdown cell: nothing
    progress.notebook_end("02_train", 705)
    text = stream.getvalue()
    assert "02_train (2/7, profile laptop; expected ~4 min) ..." in text
    assert "Train | fit()" in text  # the bar's postfix
    assert "02_train done in 705 s (11.8 min; expected ~4 min, 2.9x the expected)" in text
    on_cuhk = reproduce.ChainProgress("laptop", "cuhk", stream=io.StringIO())
    assert on_cuhk.expected("04_comparison") == "expected ~10 min on CUHK (a first run: the baselines' maps computed)"
    assert on_cuhk.expected("03_ablation") == "expected ~21 min on CUHK"
    assert reproduce.ChainProgress("smoke", "cuhk").expected("03_ablation") == "expected ~1 min"
    assert reproduce.ChainProgress("long").expected("02_train") == "no expected time for profile long"


def test_expected_minutes_are_the_numbers_the_notebooks_print():
    import re

    from mdbd.chain.notebook import NOTEBOOK_INFO, expected_minutes

    assert set(NOTEBOOK_INFO) == set(reproduce.ALL_NOTEBOOKS)
    for name, info in NOTEBOOK_INFO.items():
        assert set(info.minutes) == {"smoke", "laptop", "paper"}, name
        if "under a minute for every profile" in info.typical:
            assert set(info.minutes.values()) == {1}, name
        for profile, minutes in info.minutes.items():
            said = re.search(rf"\b{profile} (?:<=|<|~) ([\d.]+) min", info.typical)
            if said:
                assert float(said.group(1)) == minutes, (name, profile)
        said = re.search(r"on CUHK[^~]*~ ?([\d.]+) min", info.typical)
        assert (float(said.group(1)) if said else None) == info.cuhk_minutes, name
    assert expected_minutes("02_train", "laptop") == 4 and expected_minutes("04_comparison", "laptop", "cuhk") == 10
    assert expected_minutes("02_train", "long") is None and expected_minutes("99_x", "smoke") is None


def test_cli_quiet_flag(tmp_path, capsys):
    from mdbd.cli import main

    assert main(["reproduce", "--profile", "smoke", "--only", "05_curves", "--prepare-only", "--quiet",
                 "--out", str(tmp_path)]) == 0
    captured = capsys.readouterr()
    assert "[mdbd reproduce]" not in captured.err + captured.out and "1 notebooks" in captured.out
    assert main(["reproduce", "--profile", "smoke", "--only", "05_curves", "--prepare-only",
                 "--out", str(tmp_path)]) == 0
    assert "[mdbd reproduce] 05_curves (1/1, profile smoke; expected ~1 min) ..." in capsys.readouterr().err


def test_the_typical_time_line_the_notebooks_print_is_unchanged_in_their_nbval_references():
    from pathlib import Path

    from mdbd.chain.notebook import NOTEBOOK_INFO

    folder = Path(__file__).parent / "nbval"
    checked = 0
    for name, info in NOTEBOOK_INFO.items():
        reference = folder / f"{name}.ipynb"
        if reference.is_file():
            assert f"typical time: {info.typical}" in reference.read_text(), name
            checked += 1
    assert checked >= 7


def test_one_registry_names_every_notebook_its_role_and_its_stage():
    """Issue 24 item 4: the chain, the extras and the by-name notebooks come from mdbd.chain.notebook.NOTEBOOK_INFO,
    which lists every notebook of notebooks/ with the library module it runs."""
    import importlib

    from mdbd.chain.notebook import NOTEBOOK_INFO, ROLES, notebooks_in_role
    from mdbd.core.paths import NOTEBOOKS_DIR

    assert sorted(NOTEBOOK_INFO) == sorted(p.stem for p in NOTEBOOKS_DIR.glob("[0-9][0-9]_*.ipynb"))
    assert reproduce.ALL_NOTEBOOKS == sum((notebooks_in_role(role) for role in ROLES), ())
    assert list(reproduce.NOTEBOOKS) == sorted(reproduce.NOTEBOOKS)  # the chain runs in its numbers' order
    for name, info in NOTEBOOK_INFO.items():
        importlib.import_module(info.stage)
        assert info.stage in (NOTEBOOKS_DIR / f"{name}.ipynb").read_text(), (name, info.stage)
    with pytest.raises(ConfigError, match="unknown notebook role"):
        notebooks_in_role("nightly")
