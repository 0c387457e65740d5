"""`mdbd verify`: a regenerated table reproduces its reference when every value but the timings is equal; a changed
value, a lost row or a lost table does not; the committed reference set is read from git."""

import subprocess

import pandas as pd
import pytest

from mdbd.cli import main
from mdbd.core.errors import ConfigError, DataError
from mdbd.evaluation.verify import compare_folders, compare_frames, reproduces, tracked_tables


def _metrics(value=0.8177, seconds=161.1, code="0.1.0+aaaaaaa"):
    return pd.DataFrame({"method": ["multianet", "hl"], "metric": ["max_f", "max_f"], "value": [value, 0.8101],
                         "ci_low": [0.79, None], "train_seconds": [seconds, 98.7], "code_version": [code, code]})


def _bench(latency=40.3, flops=12.5):
    return pd.DataFrame({"task": ["inference latency", "model FLOPs", "fraction of device peak"],
                         "value": [latency, flops, latency / 1000], "unit": ["ms/image", "GFLOP", "fraction"],
                         "note": [f"eager {latency:.0f} ms/image", "", ""]})


def test_equal_values_written_by_another_commit_are_identical():
    result = compare_frames("t", _metrics(), _metrics(code="0.1.0+bbbbbbb"))
    assert result.status == "identical" and not result.values and not result.timings
    assert result.written_by == ("0.1.0+aaaaaaa", "0.1.0+bbbbbbb")


def test_timings_differ_apart_from_values():
    result = compare_frames("t", _metrics(), _metrics(seconds=205.0))
    assert result.status == "timings differ" and result.timings == {"train_seconds": pytest.approx(43.9)}
    bench = compare_frames("06_bench", _bench(), _bench(latency=32.0))
    assert bench.status == "timings differ" and set(bench.timings) == {"value", "note"} and not bench.values


def test_a_changed_value_fails_with_its_largest_difference_and_atol_admits_it():
    result = compare_frames("t", _metrics(), _metrics(value=0.8177 + 3e-4))
    assert result.status == "values differ" and result.values["value"] == pytest.approx(3e-4)
    assert compare_frames("t", _metrics(), _metrics(value=0.8177 + 3e-4), atol=1e-3).status == "identical"
    # the default tolerance: summation-order noise passes, the smallest real change measured (1.3e-4) does not
    assert compare_frames("t", _metrics(), _metrics(value=0.8177 + 1e-9)).status == "identical"
    assert compare_frames("t", _metrics(), _metrics(value=0.8177 + 1.3e-4)).status == "values differ"
    assert compare_frames("t", _metrics(), _metrics(value=0.8177 + 1e-9), atol=0).status == "values differ"
    # a deterministic benchmark row (FLOPs) is a value, not a timing
    flops = compare_frames("06_bench", _bench(), _bench(flops=13.0))
    assert flops.status == "values differ" and flops.values == {"value": pytest.approx(0.5)}


def test_missing_values_count_and_text_columns_are_compared():
    filled = _metrics()
    filled.loc[1, "ci_low"] = 0.78
    assert compare_frames("t", _metrics(), filled).values == {"ci_low": 0.0}
    renamed = _metrics()
    renamed.loc[0, "method"] = "multianet-literal"
    assert compare_frames("t", _metrics(), renamed).values == {"method": None}


def test_lost_rows_or_columns_are_named():
    result = compare_frames("t", _metrics(), _metrics().drop(columns="ci_low").iloc[:1])
    assert result.status == "rows or columns differ"
    assert set(result.values) == {"2 rows -> 1 rows", "column ci_low gone"}
    assert result.written_by == ("0.1.0+aaaaaaa", "0.1.0+aaaaaaa")
    reordered = _metrics()[["metric", "method", "value", "ci_low", "train_seconds", "code_version"]]
    assert compare_frames("t", _metrics(), reordered).values == {"columns reordered": None}
    with pytest.raises(ConfigError, match="atol"):
        compare_frames("t", _metrics(), _metrics(), atol=-1)


def _write(folder, tables):
    folder.mkdir(parents=True, exist_ok=True)
    for name, table in tables.items():
        table.to_csv(folder / f"{name}.csv", index=False)
    return folder


def test_folders_report_missing_and_new_tables(tmp_path):
    reference = _write(tmp_path / "ref", {"02_metrics": _metrics(), "06_bench": _bench(), "04_table_i": _metrics()})
    regenerated = _write(tmp_path / "new", {"02_metrics": _metrics(code="x"), "06_bench": _bench(latency=30.0),
                                            "09_extra": _metrics()})
    table = compare_folders(reference, regenerated).set_index("table")["status"].to_dict()
    assert table == {"02_metrics": "identical", "04_table_i": "missing", "06_bench": "timings differ",
                     "09_extra": "new"}
    assert not reproduces(compare_folders(reference, regenerated))
    (reference / "04_table_i.csv").unlink()
    assert reproduces(compare_folders(reference, regenerated))


def test_folders_bad_input_names_the_folder_or_file(tmp_path):
    with pytest.raises(DataError, match="reference tables folder .*nowhere does not exist"):
        compare_folders(tmp_path / "nowhere", tmp_path)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="empty holds no .csv table"):
        compare_folders(tmp_path / "empty", tmp_path / "empty")
    good = _write(tmp_path / "good", {"a": _metrics()})
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "a.csv").write_bytes(b"\xff\xfe\x00garbage")
    with pytest.raises(DataError, match="a.csv: not a readable CSV"):
        compare_folders(good, bad)


def _git(repo, *args):
    subprocess.run(["git", "-C", str(repo), *args], check=True, capture_output=True)


@pytest.fixture
def repo(tmp_path):
    """A git checkout with results/laptop/cuhk/tables committed."""
    repo = tmp_path / "repo"
    _write(repo / "results" / "laptop" / "cuhk" / "tables", {"02_metrics": _metrics(), "06_bench": _bench()})
    (repo / "results" / "laptop" / "cuhk" / "tables" / "02_metrics.md").write_text("# not a table\n")
    _git(repo.parent, "init", "-q", str(repo))
    _git(repo, "add", ".")
    _git(repo, "-c", "user.name=t", "-c", "user.email=t@t", "commit", "-qm", "reference set")
    return repo


def test_tracked_tables_come_from_the_revision_not_the_working_tree(repo, tmp_path):
    tables = repo / "results" / "laptop" / "cuhk" / "tables"
    _write(tables, {"02_metrics": _metrics(value=0.5)})  # regenerated in place
    reference = tracked_tables("HEAD", "results/laptop/cuhk/tables", tmp_path / "out", repo=repo)
    assert sorted(p.name for p in reference.iterdir()) == ["02_metrics.csv", "06_bench.csv"]
    comparison = compare_folders(reference, tables).set_index("table")
    assert comparison.loc["02_metrics", "status"] == "values differ"
    with pytest.raises(DataError, match="at git revision 'nosuchrev'"):
        tracked_tables("nosuchrev", "results/laptop/cuhk/tables", tmp_path / "o2", repo=repo)
    with pytest.raises(DataError, match="results/laptop/dut/tables"):
        tracked_tables("HEAD", "results/laptop/dut/tables", tmp_path / "o3", repo=repo)


def test_cli_exit_status_says_whether_the_set_reproduces(tmp_path, capsys):
    reference = _write(tmp_path / "ref", {"02_metrics": _metrics(), "06_bench": _bench()})
    same = _write(tmp_path / "same", {"02_metrics": _metrics(seconds=1.0), "06_bench": _bench(latency=9.0)})
    assert main(["verify", "--reference", str(reference), "--regenerated", str(same)]) == 0
    assert "reproduces the reference set (timings aside)" in capsys.readouterr().out
    changed = _write(tmp_path / "changed", {"02_metrics": _metrics(value=0.9), "06_bench": _bench()})
    assert main(["verify", "--reference", str(reference), "--regenerated", str(changed)]) == 1
    out = capsys.readouterr().out
    assert "does NOT reproduce" in out and "value (max |d| 0.0823)" in out
    assert main(["verify", "--reference", str(tmp_path / "none"), "--regenerated", str(same)]) == 2
    assert "none does not exist" in capsys.readouterr().err
    assert main(["verify", "--regenerated", str(tmp_path / "not-run")]) == 2
    assert "regenerated tables folder" in capsys.readouterr().err
