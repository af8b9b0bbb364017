"""The results folder's handle (inductscan/results/folder.py): a scan lists the folder's top level
once, however many questions its start-up asks (writable, stale temporaries, damaged files,
settings, checkpoints of another suite, what is done), and once again only for a resume's same
questions; the checkpoints it scores are found again by listing their run folders alone."""

from __future__ import annotations

import os
from pathlib import Path

import pandas as pd
import pytest

import inductscan
from inductscan.results.folder import ResultsFolder, remove_stale_temporaries
from inductscan.results.layout import temporary_beside
from tests.conftest import make_local_suite

CONFIG = inductscan.ScanConfig(probe_length=8, probe_batch=2)


@pytest.fixture
def listings(monkeypatch):
    """The folders listed (os.scandir, os.listdir: what os.walk, Path.iterdir and Path.glob call),
    each time it is listed, as resolved paths. Nothing is changed but the count."""
    listed: list[Path] = []
    scandir, listdir = os.scandir, os.listdir

    def counted_scandir(path="."):
        listed.append(Path(os.fsdecode(path)).resolve())
        return scandir(path)

    def counted_listdir(path="."):
        listed.append(Path(os.fsdecode(path)).resolve())
        return listdir(path)

    monkeypatch.setattr(os, "scandir", counted_scandir)
    monkeypatch.setattr(os, "listdir", counted_listdir)
    return listed


def test_a_scan_lists_the_results_folder_once_and_a_resume_once(tmp_path, listings):
    source = make_local_suite(tmp_path / "runs", seeds=(0, 1), steps=(0, 10))
    out = tmp_path / "results"
    first = inductscan.scan(str(source), out, config=CONFIG, progress=False)
    assert first.scored == 4
    assert listings.count(out.resolve()) == 1  # the start-up's one walk: nothing after it lists the top
    scores = {path for path in listings if path.parent.parent == (out / "scores").resolve()}
    assert len(scores) == 2  # each run folder of the scores was read (the walk, the checks and compaction)
    listings.clear()
    again = inductscan.scan(str(source), out, config=CONFIG, progress=False)
    assert again.already_done == 4 and again.scored == 0
    assert listings.count(out.resolve()) == 1
    assert listings.count((out / "scores").resolve()) == 1  # one walk answers every question of the start-up


def test_the_handle_answers_from_its_listing_until_it_lists_again(tmp_path, listings):
    source = make_local_suite(tmp_path / "runs", seeds=(0,), steps=(0, 10))
    out = tmp_path / "results"
    inductscan.scan(str(source), out, config=CONFIG, progress=False)
    folder = ResultsFolder(out)
    listings.clear()
    assert folder.has_rows() and folder.done_steps() == {("local", next(iter(folder.done_steps()))[1]): {0, 10}}
    assert len(folder.visible_files()) == 1  # compacted by the scan: one file for the run
    assert listings.count(out.resolve()) == 1
    folder.refresh()
    assert folder.has_rows()
    assert listings.count(out.resolve()) == 2


def test_stale_temporaries_of_this_host_are_found_in_the_one_listing(tmp_path):
    out = tmp_path / "results"
    dead = temporary_beside(out / "probes" / "abc.json")
    dead.parent.mkdir(parents=True)
    dead.write_text("half")
    pid = dead.name.split("-")[-2]
    stale = dead.with_name(dead.name.replace(f"-{pid}-", "-999999999-"))  # a pid no process has
    dead.rename(stale)
    live = temporary_beside(out / "scores" / "s" / "r" / "step-000000001.parquet")  # this process: alive
    live.parent.mkdir(parents=True)
    live.write_text("writing")
    top = out / f".x{stale.name[stale.name.index('.tmp-') :]}"  # the top level is never searched
    top.write_text("")
    folder = ResultsFolder(out)
    assert sorted(folder.temporaries()) == sorted([stale, live])
    assert remove_stale_temporaries(folder) == 1
    assert not stale.exists() and live.exists() and top.exists()


def test_suite_and_run_folders_reached_through_symbolic_links_are_read(tmp_path):
    """Results gathered from several places by links (a suite's folder, a run's folder) read as the
    folders themselves; a link back up the tree does not make the walk go round."""
    source = make_local_suite(tmp_path / "runs", seeds=(0, 1), steps=(0, 10))
    out = tmp_path / "results"
    inductscan.scan(str(source), out, config=CONFIG, progress=False)
    expected = inductscan.load_results(out)
    (suite,) = (out / "scores").iterdir()
    by_suite, by_run = tmp_path / "by-suite", tmp_path / "by-run"
    (by_suite / "scores").mkdir(parents=True)
    (by_suite / "scores" / suite.name).symlink_to(suite)
    (by_run / "scores" / suite.name).mkdir(parents=True)
    for run in suite.iterdir():
        (by_run / "scores" / suite.name / run.name).symlink_to(run)
    (by_run / "scores" / suite.name / "loop").mkdir()
    (by_run / "scores" / suite.name / "loop" / "up").symlink_to(by_run)
    assert len(expected.groupby(["run", "step"])) == 4
    for linked in (by_suite, by_run):
        pd.testing.assert_frame_equal(inductscan.load_results(linked), expected)
        assert len(inductscan.query(linked, best=True)) == 4
