"""Issue 26 item 3: training steps and the time left reach `mdbd reproduce`'s terminal through a feed file
(mdbd.core.progress_feed), from the kernels and their workers, where a tqdm bar would only reach a notebook cell."""

from __future__ import annotations

import io
import json

import pytest

from chain_notebooks import write_chain_notebook
from mdbd.chain import reproduce
from mdbd.core.progress_feed import PROGRESS_FILE_ENV, FeedReader, ProgressFeed, describe_event


def test_a_feed_writes_throttled_steps_and_every_epoch_end(tmp_path):
    path = tmp_path / "feed.jsonl"
    feed = ProgressFeed("run-a", epochs=2, steps_per_epoch=3, path=path, interval=3600)
    for epoch in range(2):
        for step in range(1, 4):
            feed.step(epoch, step)
    events = [json.loads(line) for line in path.read_text().splitlines()]
    # the first step, then only the epochs' last steps: the interval holds the others back
    assert [(e["epoch"], e["step"], e["done"]) for e in events] == [(1, 1, 1), (1, 3, 3), (2, 3, 6)]
    assert events[-1]["finished"] and not events[1]["finished"] and events[-1]["left"] == 0
    assert events[0]["left"] is not None and events[0]["total"] == 6


def test_a_resumed_run_estimates_from_its_own_steps_only(tmp_path):
    path = tmp_path / "feed.jsonl"
    feed = ProgressFeed("run-b", epochs=4, steps_per_epoch=10, start_epoch=3, path=path, interval=0)
    feed.step(3, 5)  # 5 steps done here, 5 to go: the estimate is about the time taken so far
    event = json.loads(path.read_text())
    assert event["done"] == 35 and event["left"] == pytest.approx(event["elapsed"], abs=0.2)


def test_no_variable_no_file(tmp_path, monkeypatch):
    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    feed = ProgressFeed("run", epochs=1, steps_per_epoch=1)
    feed.step(0, 1)
    assert not feed.enabled and not list(tmp_path.iterdir())


def test_the_reader_keeps_the_latest_event_per_run_and_waits_for_whole_lines(tmp_path):
    path = tmp_path / "feed.jsonl"
    reader = FeedReader(path)
    assert reader.poll() == {}  # no file yet
    first = {"run": "a", "epoch": 1, "epochs": 2, "step": 1, "steps": 2, "done": 1, "total": 4, "left": 30.0}
    half = json.dumps({**first, "step": 2, "done": 2})
    path.write_text(json.dumps(first) + "\n" + half[:10])
    assert reader.poll()["a"]["done"] == 1
    with open(path, "a") as fh:
        fh.write(half[10:] + "\n")
    assert reader.poll()["a"]["done"] == 2 and [e["run"] for e in reader.active()] == ["a"]
    assert describe_event(reader.latest["a"]) == "a: epoch 1/2, step 2/2 (50 %), ~0.5 min left"


def _event(run, epoch, done, finished=False):
    return json.dumps({"run": run, "epoch": epoch, "epochs": 2, "step": 1, "steps": 5, "done": done, "total": 10,
                       "elapsed": 1.0, "left": 10.0, "finished": finished}) + "\n"


def test_the_chain_shows_a_line_per_epoch_and_between_them_once_a_minute(tmp_path):
    path = tmp_path / "feed.jsonl"
    stream = io.StringIO()
    progress = reproduce.ChainProgress("smoke", stream=stream, bar=False)
    progress._reader = FeedReader(path)  # what watch_training sets, without its thread
    path.write_text(_event("a", 1, 1))
    assert len(progress.show_training(now=0)) == 1
    with open(path, "a") as fh:
        fh.write(_event("a", 1, 2))
    assert progress.show_training(now=10) == []  # same epoch, within the minute
    assert len(progress.show_training(now=10 + progress.TRAINING_LINE_S)) == 1
    with open(path, "a") as fh:
        fh.write(_event("a", 2, 6) + _event("b", 1, 1) + _event("a", 2, 10, finished=True))
    lines = progress.show_training(now=80)
    assert [line.split("training ")[1][:1] for line in lines] == ["a", "b"] and lines[0].endswith("(trained)")
    assert stream.getvalue().count("[mdbd reproduce]   training ") == 4


@pytest.mark.slow
def test_a_notebook_kernel_feeds_the_chain(tmp_path, monkeypatch):
    """The variable reaches the kernel (and so its training workers): a cell that feeds steps is seen outside."""
    write_chain_notebook(tmp_path / "notebooks", [
        "import time\nfrom mdbd.core.progress_feed import ProgressFeed\n"
        "feed = ProgressFeed('tiny-run', epochs=1, steps_per_epoch=2, interval=0)\n"
        "feed.step(0, 1)\ntime.sleep(2.5)\nfeed.step(0, 2)"])
    monkeypatch.setattr(reproduce, "NOTEBOOKS_DIR", tmp_path / "notebooks")
    monkeypatch.delenv(PROGRESS_FILE_ENV, raising=False)
    stream = io.StringIO()
    reproduce.run_chain("smoke", ["01_data"], out_dir=tmp_path / "out", progress_stream=stream)
    training = [line for line in stream.getvalue().splitlines() if "training tiny-run" in line]
    assert training and training[-1].endswith("step 2/2 (100 %), ~0.0 min left (trained)")
    assert PROGRESS_FILE_ENV not in __import__("os").environ  # restored after the chain
