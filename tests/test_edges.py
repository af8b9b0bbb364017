"""The edges: Ray from the command line and its refusals, a Ray task that raises, 16-bit dtypes
against float32, and click's own usage errors."""

from __future__ import annotations

import pandas as pd
import pytest
import ray
from click.testing import CliRunner

import inductscan
from inductscan.cli import main
from inductscan.plan import ScanConfig, plan
from inductscan.runner import Progress, ScanContext, ScanSummary, run_scan
from inductscan.suites import local_suite

from .conftest import invoke_cli, make_local_suite, neox_model, run_cli

PROBE = ["--probe-length", "8", "--probe-batch", "4", "--quiet"]
HEAD_SCORES = ["induction", "prefix_matching", "duplicate_token", "previous_token", "copying"]
# Largest differences from float32 seen on these tiny models (GPT-2 and NeoX), times 4-9: attention
# scores and copying 2.2e-4 (float16) and 2.2e-3 (bfloat16); induction_logit 2.7e-4 and 2.9e-3;
# the losses 1.4e-3 and 8.4e-3 nats.
TOLERANCE = {
    "float16": {"attention": 2e-3, "induction_logit": 1e-2, "losses": 1e-2},
    "bfloat16": {"attention": 1e-2, "induction_logit": 2e-2, "losses": 5e-2},
}


def table(folder) -> pd.DataFrame:
    frame = inductscan.load_results(folder).drop(columns=["scored_at"]).reset_index()
    return frame.sort_values(["suite", "run", "step", "layer", "head"]).reset_index(drop=True)


def test_scan_on_ray_from_the_command_line_gives_the_local_table(tmp_path, ray_alone):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10))
    local = invoke_cli("scan", str(folder), "--out", str(tmp_path / "local"), *PROBE)
    on_ray = run_cli(
        "scan", str(folder), "--out", str(tmp_path / "ray"), *PROBE, "--executor", "ray", "--cpus-per-task", "1"
    )
    assert local.returncode == 0 and on_ray.returncode == 0, on_ray.stdout + on_ray.stderr
    assert "2 scored" in on_ray.stdout
    pd.testing.assert_frame_equal(table(tmp_path / "ray"), table(tmp_path / "local"))


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        (["--ray-address", "auto"], "--ray-address needs --executor ray"),
        (["--executor", "ray", "--max-disk", "1GB"], "--max-disk"),
        (["--executor", "ray", "--cpus-per-task", "0"], "--cpus-per-task must be > 0"),
        (["--executor", "ray", "--gpus-per-task", "-1"], "--gpus-per-task"),
    ],
)
def test_ray_refusals_are_one_line(tmp_path, options, fragment):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    result = CliRunner().invoke(main, ["scan", str(folder), "--out", str(tmp_path / "out"), *PROBE, *options])
    assert result.exit_code == 2, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and fragment in lines[0], result.output
    assert not list((tmp_path / "out").rglob("step-*.parquet"))


def test_a_ray_task_that_raises_an_ordinary_error_stops_the_scan_with_it(tmp_path, ray_alone):
    from inductscan.distributed import RayOptions, run_on_ray

    suite = local_suite(make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10)))
    refs = plan(suite)
    scoring = ScanContext(ScanConfig(probe_length=8), {suite.name: "not a probe"})  # scoring it is a plain bug
    ray.init(num_cpus=1, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    try:
        with pytest.raises(AttributeError, match="has no attribute"):  # as a local scan would: never "failed"
            run_on_ray(
                refs, tmp_path / "out", scoring, RayOptions(), ScanSummary(planned=2), Progress(2, 0, enabled=False)
            )
    finally:
        ray.shutdown()
    assert not (tmp_path / "out" / "failures").exists()


@pytest.mark.parametrize("family", ["gpt2", "neox"])
@pytest.mark.parametrize("dtype", ["float16", "bfloat16"])
def test_16_bit_dtypes_agree_with_float32_within_a_stated_tolerance(tmp_path, family, dtype):
    factory = {} if family == "gpt2" else {"factory": neox_model}
    suite = local_suite(make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0, 10), **factory))
    exact = run_scan(plan(suite), tmp_path / "float32", ScanConfig(probe_length=8), progress=False)
    low = run_scan(plan(suite), tmp_path / dtype, ScanConfig(probe_length=8, dtype=dtype), progress=False)
    assert exact.scored == low.scored == 2
    reference, frame = inductscan.load_results(tmp_path / "float32"), inductscan.load_results(tmp_path / dtype)
    assert set(frame.dtype) == {dtype}
    tolerance = TOLERANCE[dtype]
    groups = {
        "attention": HEAD_SCORES,
        "induction_logit": ["induction_logit"],
        "losses": ["loss_first", "loss_repeat", "in_context_gain"],
    }
    for group, columns in groups.items():
        difference = (frame[columns] - reference[columns]).abs().to_numpy().max()
        assert difference <= tolerance[group], (group, difference)
    assert (frame[HEAD_SCORES] != reference[HEAD_SCORES]).to_numpy().any()  # it did compute in 16 bits


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (["scan"], "Missing argument 'SUITE_OR_FOLDER'"),
        (["scan", "toy", "--no-such-flag"], "No such option '--no-such-flag'"),
        (["scan", "toy", "--prefetch", "many"], "'many' is not a valid integer"),
        (["query", "results", "--format", "xml"], "'xml' is not one of"),
        (["plot", "results"], "Missing option '-o'"),
        (["scan", "toy", "--executor", "slurm"], "'slurm' is not one of"),
        (["nonsense"], "No such command 'nonsense'"),
    ],
)
def test_usage_errors_exit_2_with_click_s_message(args, fragment):
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2, result.output
    assert fragment in result.output and "Traceback" not in result.output


def test_a_device_inductscan_cannot_score_on_is_bad_input(tmp_path):
    folder = make_local_suite(tmp_path / "suite", seeds=(0,), steps=(0,))
    result = CliRunner().invoke(main, ["scan", str(folder), "--device", "meta"])
    assert result.exit_code == 2 and "cpu, cuda or mps" in result.output, result.output
