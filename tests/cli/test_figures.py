"""``inductscan plot``, ``pattern`` and ``report`` (inductscan/cli/figures.py): the kinds of plot
come from one registry (inductscan.plot_kinds), whose options are refused for the kinds they do
not change, by parameter in Python and by flag on the command line."""

from __future__ import annotations

import pytest

import inductscan
from inductscan.cli import main
from inductscan.errors import ConfigError, OutputError
from inductscan.plot_kinds import OPTIONS, PLOT_KINDS

from .conftest import one_line_error

VALUES = {"metric": "induction", "threshold": 0.3, "x": "tokens", "total_tokens": 100, "step": 10, "top": 3}
FLAGS = {"x": "--x", "total_tokens": "--total-tokens"}


def test_the_help_lists_every_kind_of_the_registry(runner):
    shown = "".join(runner.invoke(main, ["plot", "--help"]).output.split())  # click wraps at hyphens too
    for name, kind in PLOT_KINDS.items():
        assert "".join(f"{name}: {kind.description}".split()) in shown
    assert set(kind for kinds in OPTIONS.values() for kind in kinds) <= set(PLOT_KINDS)


@pytest.mark.parametrize("option", list(OPTIONS))
def test_an_option_is_refused_for_a_kind_it_does_not_change(runner, scanned, tmp_path, option):
    _, out = scanned
    kind = next(name for name in PLOT_KINDS if name not in OPTIONS[option])
    with pytest.raises(ConfigError, match=f"^{option} does not apply to kind {kind}; it applies to "):
        inductscan.plot(kind, out, tmp_path / "a.png", **{option: VALUES[option]})
    flag = FLAGS.get(option, f"--{option}")
    result = runner.invoke(
        main, ["plot", str(out), "-o", str(tmp_path / "a.png"), "--kind", kind, flag, str(VALUES[option])]
    )
    one_line_error(result, f"error: {flag} does not apply to --kind {kind}; it applies to {', '.join(OPTIONS[option])}")
    assert not (tmp_path / "a.png").exists()


def test_the_library_and_the_command_draw_the_same_kinds(runner, scanned, tmp_path):
    _, out = scanned
    for kind in ("timing", "heatmap", "seeds", "gain"):
        written = inductscan.plot(kind, out, tmp_path / f"{kind}.png")
        assert written.drawn and (tmp_path / f"{kind}.png").stat().st_size > 1000
        shown = runner.invoke(main, ["plot", str(out), "-o", str(tmp_path / f"{kind}-cli.png"), "--kind", kind])
        warned = "warning: a heatmap draws one run, the first of the 2 selected" if kind == "heatmap" else ""
        assert shown.exit_code == 0 and shown.stderr.startswith(warned)
        assert shown.stdout == f"{kind} plot written to {tmp_path / f'{kind}-cli.png'}\n"
    nothing = inductscan.plot("timing", out, tmp_path / "none.png", seed=[9])
    assert not nothing.drawn and not (tmp_path / "none.png").exists()


def test_an_image_path_is_checked_before_anything_is_read(runner, scanned, tmp_path):
    _, out = scanned
    with pytest.raises(OutputError, match="does not exist; create it, or choose another output$"):
        inductscan.plot("timing", out, tmp_path / "no" / "a.png")
    result = runner.invoke(main, ["plot", str(out), "-o", str(tmp_path / "no" / "a.png")])
    one_line_error(result, "does not exist; create it, or choose another -o")
    one_line_error(runner.invoke(main, ["plot", str(out), "-o", str(tmp_path / "a.txt")]), "name it .png, .svg or .pdf")
    result = runner.invoke(main, ["pattern", str(out), "--step", "10", "--layer", "0", "--head", "0", "-o", "p.txt"])
    one_line_error(result, "name it .png, .svg or .pdf")


def test_a_pattern_through_the_library_and_the_command(runner, scanned, tmp_path):
    _, out = scanned
    found = inductscan.save_head_pattern(out, 10, 0, 1, tmp_path / "p.png", seed=0)
    assert (tmp_path / "p.png").stat().st_size > 1000
    assert found.induction == pytest.approx(found.recorded_induction, abs=1e-4)
    shown = runner.invoke(
        main,
        [
            "pattern",
            str(out),
            "--step",
            "10",
            "--layer",
            "0",
            "--head",
            "1",
            "--seed",
            "0",
            "-o",
            str(tmp_path / "q.png"),
        ],
    )
    assert shown.exit_code == 0 and f"induction {found.induction:.4f}" in shown.output
    with pytest.raises(ConfigError, match="choose one with run or seed$"):
        inductscan.save_head_pattern(out, 10, 0, 1, tmp_path / "p.png")
