"""Plant each bug the tests must catch in a scratch copy of the repository, run the fast tests
there, and print which tests fail: a table for BENCHMARKS.md. Two sets: ``llama`` (the Llama
family's forward pass and weight scores, against tests/test_llama.py + test_reference_llama.py) and
``trust`` (settings, selections and boundaries of the results table, against the tests that own them).

    python scripts/planted_bugs.py                      # the llama set: every bug
    python scripts/planted_bugs.py --only kv-group-modulo-forward
    python scripts/planted_bugs.py --set trust

Each bug is one textual edit of one file; an edit whose text is no longer in the file stops the
script (the table would otherwise claim a bug that was never planted). The copy is the working
tree's tracked and new files, imported first on ``PYTHONPATH``; the check that the copy, not this
tree, is what the tests import is part of each run.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
TESTS = ("tests/test_llama.py", "tests/test_reference_llama.py")
FORWARD = "inductscan/families/llama_forward.py"

# name -> (what it does wrong, file, text, replacement)
BUGS = {
    "rotary-halves-swapped": (
        "rotary turns dimension i + E/2 the wrong way (halves swapped in rotate_half)",
        FORWARD,
        "torch.cat([-second, first], dim=-1) * sin",
        "torch.cat([second, -first], dim=-1) * sin",
    ),
    "rotary-first-half-only": (
        "rotary applied to the first half of the head's dimensions only",
        FORWARD,
        "    return x * cos + torch.cat([-second, first], dim=-1) * sin",
        "    turned = x * cos + torch.cat([-second, first], dim=-1) * sin\n"
        "    return torch.cat([turned[..., : x.shape[-1] // 2], second], dim=-1)",
    ),
    "kv-group-modulo-forward": (
        "the forward pass gives head h key/value head h % n_kv, not h // (n_heads / n_kv)",
        FORWARD,
        "q = q.view(batch, n_positions, kv, group, e).permute(0, 2, 3, 1, 4)",
        "q = q.view(batch, n_positions, group, kv, e).transpose(2, 3).permute(0, 2, 3, 1, 4)",
    ),
    "kv-group-modulo-circuit": (
        "the OV circuit gives head h the W_V of key/value head h % n_kv",
        "inductscan/families/llama.py",
        "groups = torch.arange(h, device=self.v_weight.device) // arch.group_size",
        "groups = torch.arange(h, device=self.v_weight.device) % arch.n_kv_heads",
    ),
    "qk-norm-per-head": (
        "QK-norm applied to each head's q and k apart instead of across all heads",
        FORWARD,
        "q, k = _rms(q, layer.q_norm, arch.norm_eps), _rms(k, layer.k_norm, arch.norm_eps)",
        "q = _rms(q.unflatten(-1, (-1, e)), layer.q_norm.view(-1, e), arch.norm_eps).flatten(-2)\n"
        "        k = _rms(k.unflatten(-1, (-1, e)), layer.k_norm.view(-1, e), arch.norm_eps).flatten(-2)",
    ),
    "post-norm-after-attention-dropped": (
        "OLMo 2/3's norm after attention dropped (the head shares too)",
        FORWARD,
        "        if arch.post_norm:\n            inverse = _inverse_rms(attended, arch.norm_eps)",
        "        if False:\n            inverse = _inverse_rms(attended, arch.norm_eps)",
    ),
    "post-norm-after-mlp-dropped": (
        "OLMo 2/3's norm after the MLP dropped",
        FORWARD,
        "x = x + _rms(_mlp(layer, x), layer.mlp_out_norm, arch.norm_eps)",
        "x = x + _mlp(layer, x)",
    ),
    "post-norm-scale-left-out-of-shares": (
        "the heads' shares not divided by the post-norm's scale (induction_logit's definition)",
        FORWARD,
        "            z = z * inverse.to(z.dtype).view(z.shape[0], 1, n_positions, 1)\n",
        "",
    ),
    "sliding-window-ignored": (
        "sliding windows ignored: every layer attends to every earlier position",
        FORWARD,
        "return hidden if window is None else hidden | (key <= query - window)",
        "return hidden",
    ),
    "rms-final-norm-centred": (
        "induction_logit centres the head's output through a final RMSNorm as if it were a LayerNorm",
        "inductscan/measure.py",
        "centred=arch.final_norm_centres",
        "centred=True",
    ),
    "input-gain-not-folded": (
        "the RMSNorm gain before attention left out of W_V (copying)",
        "inductscan/families/llama.py",
        "        if self.input_norm is not None:\n            return self.input_norm\n",
        "",
    ),
}


SETTINGS, READ, SQL = "inductscan/results/settings.py", "inductscan/results/read.py", "inductscan/results/sql.py"
TRUST_TESTS = ("tests/test_icl.py", "tests/results/test_queries.py", "tests/test_phases.py", "tests/cli/test_query.py")
TRUST_BUGS = {
    "icl-settings-by-dataset-name": (
        "ICL settings compared by the dataset's name, not by the hash of its token ids",
        SETTINGS,
        'elif mine is not None and mine["ids_sha256"] != theirs["ids_sha256"]:',
        'elif mine is not None and mine["dataset"] != theirs["dataset"]:',
    ),
    "same-weights-latest-step": (
        "same_weights_as names the latest other step with the same hash, not the earliest",
        READ,
        'steps = frame[keys + ["step"]].drop_duplicates().sort_values("step")',
        'steps = frame[keys + ["step"]].drop_duplicates().sort_values("step", ascending=False)',
    ),
    "min-induction-strict": (
        "--min-induction drops a head whose score equals the threshold",
        SQL,
        '"induction >= ?"',
        '"induction > ?"',
    ),
    "threshold-strict": (
        "first_above_threshold needs a value above the threshold, not at it",
        "inductscan/phases.py",
        "sign * values >= sign * threshold",
        "sign * values > sign * threshold",
    ),
    "best-of-ties-highest": (
        "--best among tied heads takes the highest (layer, head), not the lowest",
        SQL,
        "-layer, -head'",
        "layer, head'",
    ),
}
SETS = {"llama": (BUGS, TESTS), "trust": (TRUST_BUGS, TRUST_TESTS)}


def scratch_copy(destination: Path) -> None:
    """The working tree's tracked and untracked-but-not-ignored files."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard"],
        cwd=REPO_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.splitlines()
    for name in listed:
        source = REPO_ROOT / name
        if source.is_file():
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def plant(copy: Path, bugs: dict, bug: str) -> None:
    _, name, text, replacement = bugs[bug]
    path = copy / name
    source = path.read_text()
    if source.count(text) != 1:
        raise SystemExit(f"{bug}: the text to replace is not (once) in {name}; update scripts/planted_bugs.py")
    path.write_text(source.replace(text, replacement))


def run_tests(copy: Path, python: str, tests: tuple[str, ...]) -> tuple[int, list[str], str]:
    """(tests run, the failing ones' names, pytest's last line), in the copy, the copy imported first."""
    environment = {"PYTHONPATH": str(copy), "PATH": "/usr/bin:/bin"}
    where = subprocess.run(
        [python, "-c", "import inductscan; print(inductscan.__file__)"],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    if not where.startswith(str(copy)):
        raise SystemExit(f"the tests would import {where}, not the scratch copy")
    done = subprocess.run(
        [python, "-m", "pytest", *tests, "-m", "not slow", "-q", "-p", "no:cacheprovider", "-W", "ignore"],
        cwd=copy,
        env=environment,
        capture_output=True,
        text=True,
    )
    failed = sorted(set(re.findall(r"^(?:FAILED|ERROR) (\S+)", done.stdout, re.MULTILINE)))
    last = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else done.stderr[-300:]
    total = sum(int(count) for count in re.findall(r"(\d+) (?:passed|failed|error)", last))
    return total, failed, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="comma-separated bug names (default: all, and the unplanted baseline)")
    parser.add_argument("--set", choices=sorted(SETS), default="llama", help="which bugs, against which tests")
    parser.add_argument("--python", default=sys.executable)
    arguments = parser.parse_args()
    bugs, tests = SETS[arguments.set]
    chosen = arguments.only.split(",") if arguments.only else ["none", *bugs]
    rows = []
    for bug in chosen:
        with tempfile.TemporaryDirectory(prefix="inductscan-planted-") as scratch:
            copy = Path(scratch)
            scratch_copy(copy)
            if bug != "none":
                plant(copy, bugs, bug)
            total, failed, last = run_tests(copy, arguments.python, tests)
        shown = ", ".join(name.split("::")[-1] for name in failed[:4]) + (" ..." if len(failed) > 4 else "")
        rows.append((bug, len(failed), total, shown))
        print(f"{bug}: {len(failed)} of {total} failed ({last})", flush=True)
    print("\n| planted bug | what it does | failing tests | first failing tests |")
    print("|---|---|---|---|")
    for bug, failures, total, shown in rows:
        what = "nothing planted" if bug == "none" else bugs[bug][0]
        print(f"| `{bug}` | {what} | {failures} of {total} | {shown or '-'} |")
    missed = [bug for bug, failures, _, _ in rows if bug != "none" and failures == 0]
    baseline = [failures for bug, failures, _, _ in rows if bug == "none"]
    if missed or any(baseline):
        raise SystemExit(f"not caught: {missed}; failures with nothing planted: {baseline}")


if __name__ == "__main__":
    main()
