"""A mistake on the `artnet` command line is one clear line on stderr and exit status 2, never a traceback.

Each case runs the real command in a fresh process (`python -m artnet.cli`, the code of this checkout), as a
person at a shell would meet it: what they see on stderr is the whole of the test.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
RECIPE = str(ROOT / "experiments" / "configs" / "sample.py")
# Importing TensorFlow prints these before any code of ours runs (absl's pre-init log, oneDNN's banner), whatever
# TF_CPP_MIN_LOG_LEVEL says: a check that fails before TensorFlow is imported prints none of them.
TENSORFLOW_BANNER = ("WARNING: All log messages before absl::InitializeLog()", "oneDNN custom operations")


def artnet(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")
    return subprocess.run(
        [sys.executable, "-m", "artnet.cli", *args], capture_output=True, text=True, cwd=cwd, env=env, timeout=300
    )


def error_lines(stderr: str) -> list[str]:
    return [line for line in stderr.splitlines() if line.strip()]


# (id, arguments, the line's start, words it must hold). {tmp} is a fresh temporary folder.
CASES = [
    (
        "set-unknown-key",
        ["train", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "epochz=3"],
        "artnet train: error: ",
        ["unknown config field 'epochz'"],
    ),
    (
        "set-unknown-nested-key",
        ["train", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "data.batchsize=4"],
        "artnet train: error: ",
        ["unknown config field 'data.batchsize'"],
    ),
    (
        "set-bad-value",
        ["train", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "epochs=ten"],
        "artnet train: error: ",
        ["epochs=ten", "takes int", "'ten'"],
    ),
    (
        "set-without-equals",
        ["train", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "epochs"],
        "artnet train: error: ",
        ["'epochs' is not key=value"],
    ),
    (
        "set-refused-by-validation",
        ["train", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "loss_weighting=uncertainity"],
        "artnet train: error: ",
        ["unknown loss_weighting 'uncertainity'", "did you mean 'uncertainty'"],
    ),
    (
        "probe-set-bad-value",
        ["probe", "--config", RECIPE, "--workdir", "{tmp}/run", "--set", "data.batch_size=many"],
        "artnet probe: error: ",
        ["data.batch_size=many", "takes int"],
    ),
    (
        "data-stats-folder-without-out",
        ["data-stats", "--folder", "{tmp}"],
        "artnet data-stats: error: ",
        ["--folder needs --out"],
    ),
    (
        "evaluate-csv-without-folder",
        ["evaluate", "--model", "{tmp}/model.keras", "--out", "{tmp}/eval", "--csv", "{tmp}/labels.csv"],
        "artnet evaluate: error: ",
        ["--csv", "--folder"],
    ),
    (
        "demo-auth-without-password",
        ["demo", "--model", "{tmp}", "--auth", "alice"],
        "artnet demo: error: ",
        ["user:password"],
    ),
]


@pytest.fixture(scope="module")
def run_case(tmp_path_factory):
    """Each case's command run once (the two tests below read the same run), in a folder of its own."""
    done = {}

    def run(arguments: list[str]) -> tuple[subprocess.CompletedProcess, Path]:
        key = tuple(arguments)
        if key not in done:
            folder = tmp_path_factory.mktemp("cli-error")
            done[key] = artnet(*(argument.format(tmp=folder) for argument in arguments), cwd=folder), folder
        return done[key]

    return run


@pytest.mark.parametrize(("arguments", "start", "words"), [case[1:] for case in CASES], ids=[c[0] for c in CASES])
def test_a_command_line_mistake_exits_2_with_a_clear_error_and_no_traceback(arguments, start, words, run_case):
    done, tmp_path = run_case(arguments)
    assert done.returncode == 2, (done.returncode, done.stderr[-3000:])
    assert "Traceback" not in done.stderr, done.stderr[-3000:]
    ours = [line for line in error_lines(done.stderr) if not line.startswith(TENSORFLOW_BANNER[0])]
    ours = [line for line in ours if TENSORFLOW_BANNER[1] not in line]
    assert len(ours) == 1, done.stderr  # one line of ours, whatever TensorFlow printed before it
    assert ours[0].startswith(start) and all(word in ours[0] for word in words), ours[0]
    assert done.stdout == "", done.stdout
    assert not (tmp_path / "run").exists()  # refused before any workdir was made


@pytest.mark.parametrize(
    ("arguments", "start"),
    [
        pytest.param(
            case[1],
            case[2],
            id=case[0],
        )
        for case in CASES
    ],
)
def test_the_error_line_is_all_that_stderr_holds(arguments, start, run_case):
    """Checked before TensorFlow is imported: no start-up banner pushes the one line that matters out of view."""
    done, _ = run_case(arguments)
    lines = error_lines(done.stderr)
    assert len(lines) == 1 and lines[0].startswith(start), done.stderr


def test_argparse_mistakes_are_a_usage_and_one_error_line_and_exit_2(tmp_path):
    """What argparse itself refuses (a missing or unknown option, a value of the wrong type) follows the same rule:
    its usage, then one error line naming the option."""
    for arguments, words in (
        (["train", "--config", RECIPE], "artnet train: error: the following arguments are required: --workdir"),
        (["demo", "--model", str(tmp_path), "--port", "http"], "artnet demo: error: argument --port: invalid int"),
        (["evaluate", "--model", "m", "--out", "o", "--modle", "x"], "artnet: error: unrecognized arguments: --modle"),
    ):
        done = artnet(*arguments, cwd=tmp_path)
        assert done.returncode == 2, done.stderr
        lines = error_lines(done.stderr)
        assert lines[0].startswith("usage: artnet") and lines[-1].startswith(words), done.stderr
        assert sum(": error: " in line for line in lines) == 1 and "Traceback" not in done.stderr, done.stderr
