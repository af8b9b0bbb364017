"""``inductscan suites`` and ``inductscan toy-suite`` (inductscan/cli/catalog.py)."""

from __future__ import annotations

from inductscan.cli import main

from .conftest import one_line_error


def test_suites_list_and_detail(runner):
    listing = runner.invoke(main, ["suites"])
    assert listing.exit_code == 0
    for name in ("stanford-gpt2-small", "stanford-gpt2-medium", "pythia-12b-deduped", "pythia-410m-seeds", "toy"):
        assert name in listing.output
    detail = runner.invoke(main, ["suites", "stanford-gpt2-small"])
    assert "steps: 609 (0 .. 400000)" in detail.output
    assert "tokens per step: 524,288" in detail.output
    assert "stanford-crfm/expanse-gpt2-small-x777" in detail.output
    pythia = runner.invoke(main, ["suites", "pythia-160m-seeds"])
    assert "steps: 154 (0 .. 143000)" in pythia.output and "EleutherAI/pythia-160m-seed9" in pythia.output


def test_toy_suite_refuses_bad_counts_and_a_file_for_a_folder(runner, tmp_path):
    one_line_error(runner.invoke(main, ["toy-suite", str(tmp_path / "toy"), "--seeds", "0"]), "--seeds and --jobs")
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    result = runner.invoke(main, ["toy-suite", str(blocker), "--seeds", "1", "--train-steps", "20"])
    one_line_error(result, "is a file, not a folder: choose another OUT")
    # a library check, named by the command's flag: ToyConfig(train_steps=5) says train_steps
    one_line_error(runner.invoke(main, ["toy-suite", str(tmp_path / "t"), "--train-steps", "5"]), "--train-steps >= 10")
