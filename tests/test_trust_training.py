"""Trust nothing read from disk, training side: what a run reads back, the folders it trains on, its cluster.

- A checkpoint, a done marker, `best.keras` or a feature-cache file that is cut short, empty or not what it should
  be is named in one line and recomputed (or done without); the rerun ends as an uninterrupted run ends.
- A labelled folder admits only its own files.
- A multi-worker cluster is checked before TensorFlow loads, waits for its peers with a deadline, obeys SIGTERM,
  says what its TensorFlow server exposes, and every worker of a run that trained exits 0.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import keras
import numpy as np
import pytest
import tensorflow as tf

from artnet.data.synthetic import synthetic_source, write_synthetic_folder
from artnet.testing.configs import tiny_config
from artnet.testing.multi_worker import free_ports, start_workers
from artnet.training.checked_files import keras_archive_problem
from artnet.training.cluster import parse_tf_config
from artnet.training.train import train

ROOT = Path(__file__).resolve().parents[1]
# Resumed and uninterrupted runs are deterministic here (no dropout, the data's own order: see `exact_config`), so
# on one machine they agree bit for bit; 1e-6 leaves room for float re-association only. A resume from the wrong
# state (a repeated or skipped epoch, lost optimizer moments) moves the weights by 1e-3 and more.
SAME = 1e-6


def exact_config(**fields):
    """tiny_config that reruns bit for bit: no dropout (its masks are not checkpointed), and the data's own order
    (tf.data's reshuffle starts again from its first order in a new run, so a resumed run would see other batches)."""
    return tiny_config(dropout=0.0, precision="float32", strategy="none", data={"shuffle_buffer": 1}, **fields)


@pytest.fixture(scope="module")
def sources():
    return {
        split: synthetic_source(96 if split == "train" else 32, seed=index)
        for index, split in enumerate(("train", "validation", "test"))
    }


class _KillAfter(keras.callbacks.Callback):
    """Stands in for a killed process: the run dies when epoch `epochs` ends (after its state was saved on the
    fit path; before it was, on artnet's loop, which calls callbacks before it checkpoints)."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise RuntimeError("killed")


def cut_short(path: Path) -> None:
    """What a kill mid-write or a full disk leaves: the first half of the file."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def epochs_logged(workdir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


def assert_same_weights(model, reference) -> None:
    for weight, expected in zip(model.get_weights(), reference.get_weights(), strict=True):
        np.testing.assert_allclose(weight, expected, rtol=0, atol=SAME)


def warnings_of(stderr: str) -> list[str]:
    lines = [line for line in stderr.splitlines() if "warning" in line]
    assert all(line.startswith("artnet: warning: ") for line in lines), lines
    return lines


# --- Files a rerun reads back -------------------------------------------------------------------------------------


def test_a_done_marker_and_best_model_cut_short_are_recomputed_and_the_rerun_equals_an_uninterrupted_run(
    sources, tmp_path, capfd
):
    config = exact_config(epochs=3)
    reference = train(config, tmp_path / "reference", sources)
    workdir = tmp_path / "damaged"
    shutil.copytree(tmp_path / "reference", workdir)
    cut_short(workdir / "fine_tune.done.weights.h5")
    cut_short(workdir / "best.keras")
    (workdir / "model.keras").unlink()
    capfd.readouterr()

    model = train(config, workdir, sources)  # before: OSError (truncated file) on every rerun

    warnings = warnings_of(capfd.readouterr().err)
    assert len(warnings) == 2, warnings  # one line per bad file
    assert any("fine_tune.done.weights.h5 is unreadable" in line and "runs again" in line for line in warnings)
    assert any("best.keras is unreadable" in line for line in warnings)
    assert_same_weights(model, reference)
    assert epochs_logged(workdir) == [1, 2, 3]  # the finished phase resumed at its end: no epoch trained twice
    assert keras_archive_problem(workdir / "model.keras") is None
    assert not (workdir / "best.keras").exists()  # a bad best model is never left to be trusted
    # The done marker is whole again, and every file was written through a rename: no temporary file is left.
    assert tf.io.gfile.exists(str(workdir / "fine_tune.done.weights.h5"))
    assert not [path for path in workdir.rglob(".*") if ".partial-" in path.name]


def test_a_resume_state_whose_files_disagree_resumes_from_the_copy_before_it_and_equals_an_uninterrupted_run(
    sources, tmp_path, capfd
):
    config = exact_config(epochs=4)
    reference = train(config, tmp_path / "reference", sources)
    workdir = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        train(config, workdir, sources, callbacks=[_KillAfter(3)])
    # A kill while epoch 3's state was written: its weights are in place, its record is cut short (Keras' own
    # BackupAndRestore then failed every rerun with a JSONDecodeError).
    state = workdir / "backup" / "fine_tune"
    assert json.loads((state / "training_metadata.json").read_text())["epoch"] == 3
    (state / "training_metadata.json").write_text('{"epoch": 3, "batch": 0, "wei')
    capfd.readouterr()

    model = train(config, workdir, sources)

    warnings = warnings_of(capfd.readouterr().err)
    assert len(warnings) == 1 and "training_metadata.json is unreadable" in warnings[0], warnings
    assert epochs_logged(workdir) == [1, 2, 3, 3, 4]  # epoch 3 again, from epoch 2's state, then on
    assert_same_weights(model, reference)


def test_a_loop_checkpoint_cut_short_falls_back_to_the_one_before_it_and_equals_an_uninterrupted_run(
    sources, tmp_path, capfd
):
    config = exact_config(epochs=4, loop="custom")
    reference = train(config, tmp_path / "reference", sources)
    workdir = tmp_path / "killed"
    with pytest.raises(RuntimeError, match="killed"):
        train(config, workdir, sources, callbacks=[_KillAfter(3)])  # checkpoints of epochs 1 and 2 are on disk
    folder = workdir / "checkpoints" / "fine_tune"
    assert tf.train.latest_checkpoint(str(folder)).endswith("ckpt-2")
    (data,) = folder.glob("ckpt-2.data-*")
    cut_short(data)
    capfd.readouterr()

    model = train(config, workdir, sources)  # before: a DataLossError on every rerun

    warnings = warnings_of(capfd.readouterr().err)
    assert len(warnings) == 1 and "ckpt-2 is unreadable" in warnings[0], warnings
    assert epochs_logged(workdir) == [1, 2, 2, 3, 4]  # resumed after epoch 1, the last whole checkpoint
    assert_same_weights(model, reference)


def test_best_weights_cut_short_are_ignored_with_a_warning_and_the_last_epochs_weights_kept(tmp_path, capfd):
    from artnet.models.artnet import ArtNet
    from artnet.training.loop import BestWeights
    from artnet.workdir import Workdir

    network = ArtNet("tiny", image_size=32)
    best = BestWeights(network, Workdir(tmp_path), "fine_tune", chief=True)
    best.keep()  # written whole: the weights file and best.keras, with no temporary file left
    assert keras_archive_problem(tmp_path / "best.keras") is None
    assert sorted(path.name for path in tmp_path.iterdir()) == ["best.keras", "best_fine_tune.weights.h5"]
    cut_short(best.file)
    last = [weight + 1.0 for weight in network.get_weights()]
    network.set_weights(last)
    restarted = BestWeights(network, Workdir(tmp_path), "fine_tune", chief=True)  # a new process: nothing in memory

    restarted.restore()  # before: OSError (truncated file)

    warnings = warnings_of(capfd.readouterr().err)
    assert len(warnings) == 1 and "last epoch's weights are kept" in warnings[0]
    for weight, expected in zip(network.get_weights(), last, strict=True):
        np.testing.assert_array_equal(weight, expected)


def _killed_mid_write(original, cut: bool = True):
    """A save that dies halfway (what it wrote is cut short), or, `cut=False`, right after it wrote its file
    whole: either way the process is gone (KeyboardInterrupt) before anything after it runs."""

    def save(self, filepath, *args, **kwargs):
        original(self, filepath, *args, **kwargs)
        if cut:
            cut_short(Path(filepath))
        raise KeyboardInterrupt("killed mid-write")

    return save


def _write_done_marker(model, workdir):
    from artnet.training.train import save_done_marker

    save_done_marker(model, workdir.phase_done("heads"))
    return [workdir.phase_done("heads")]


def _write_best_weights(model, workdir):
    from artnet.training.loop import BestWeights

    BestWeights(model, workdir, "fine_tune", chief=True).keep()
    return [workdir.root / "best_fine_tune.weights.h5", workdir.best_model]


def _write_best_model(model, workdir):
    from artnet.training.records import BestModel

    checkpoint = BestModel(str(workdir.best_model), monitor="val_loss", save_best_only=True)
    checkpoint.set_model(model)
    checkpoint.best = 10.0 if checkpoint.best is None or np.isinf(checkpoint.best) else checkpoint.best - 1
    checkpoint.on_epoch_end(0, {"val_loss": checkpoint.best - 1})
    return [workdir.best_model]


def _write_final_model(model, workdir):
    from artnet.training.records import finish

    finish(model, workdir, time.monotonic(), {})
    return [workdir.model, workdir.train_summary]


@pytest.mark.parametrize("write", [_write_done_marker, _write_best_weights, _write_best_model, _write_final_model])
def test_a_kill_while_training_writes_a_file_leaves_the_previous_one_whole(tmp_path, monkeypatch, write):
    from artnet.models.artnet import ArtNet
    from artnet.workdir import Workdir

    model, workdir = ArtNet("tiny", image_size=32), Workdir(tmp_path)
    targets = write(model, workdir)
    before = {path: path.read_bytes() for path in targets}
    monkeypatch.setattr(keras.Model, "save_weights", _killed_mid_write(keras.Model.save_weights))
    monkeypatch.setattr(keras.Model, "save", _killed_mid_write(keras.Model.save))

    with pytest.raises(KeyboardInterrupt):
        write(model, workdir)  # before: each was written in place, and a kill left it cut short

    assert {path: path.read_bytes() for path in targets} == before
    assert not [path.name for path in tmp_path.rglob("*") if ".partial-" in path.name]


@pytest.mark.parametrize("cut", [True, False], ids=["in-the-weights", "between-weights-and-record"])
def test_a_kill_while_the_resume_state_is_written_resumes_from_the_state_before(tmp_path, monkeypatch, capfd, cut):
    from artnet.models.artnet import ArtNet
    from artnet.training.records import ResumeState

    model = ArtNet("tiny", image_size=32)
    model.compile(optimizer="adam")  # its variables are part of the state
    model.optimizer.build(model.trainable_variables)

    def state():
        callback = ResumeState(str(tmp_path / "backup"), double_checkpoint=True, delete_checkpoint=False)
        callback.set_model(model)
        return callback

    first = [weight + 1.0 for weight in model.get_weights()]
    model.set_weights(first)
    state().on_epoch_end(0)  # epoch 1's state, whole
    model.set_weights([weight + 1.0 for weight in first])
    monkeypatch.setattr(keras.Model, "save_weights", _killed_mid_write(keras.Model.save_weights, cut=cut))
    with pytest.raises(KeyboardInterrupt):
        state().on_epoch_end(1)  # epoch 2's state: the kill lands in its weights, or just after them
    monkeypatch.undo()

    resumed = state()
    # Before (Keras' BackupAndRestore), a kill between the weights and the record resumed epoch 1 with epoch 2's
    # weights: epoch 2 was then trained twice, silently.
    resumed.on_train_begin()
    assert model._initial_epoch == 1 and not warnings_of(capfd.readouterr().err)
    for weight, expected in zip(model.get_weights(), first, strict=True):
        np.testing.assert_array_equal(weight, expected)


def _spoil_truncated(path: Path) -> None:
    cut_short(path)


def _spoil_empty(path: Path) -> None:
    path.write_bytes(b"")


def _spoil_key(path: Path) -> None:
    with np.load(path) as stored:
        features = stored["features"]
    np.savez(path, something_else=features)


def _spoil_shape(path: Path) -> None:
    with np.load(path) as stored:
        features = stored["features"]
    np.savez(path, features=features[:, :-3])  # fewer examples: an IndexError much later, before


def _spoil_trailing_shape(path: Path) -> None:
    with np.load(path) as stored:
        features = stored["features"]
    np.savez(path, features=features[..., :-1])  # right views and examples, not what the .json beside it records


def _spoil_values(path: Path) -> None:
    with np.load(path) as stored:
        features = stored["features"].copy()
    features[0, 0, 0] = np.nan
    np.savez(path, features=features)


@pytest.mark.parametrize(
    "spoil", [_spoil_truncated, _spoil_empty, _spoil_key, _spoil_shape, _spoil_trailing_shape, _spoil_values]
)
def test_a_bad_feature_cache_file_is_computed_again_with_one_warning(tmp_path, tiny_weights, monkeypatch, capfd, spoil):
    from artnet.training import feature_cache
    from artnet.training.feature_cache import FeatureSpec, cached_features

    source = synthetic_source(12, seed=3)
    spec = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, views=2)
    cache = tmp_path / "cache"
    expected = cached_features(source, spec, cache)
    (path,) = cache.glob("*.npz")
    spoil(path)
    passes = []
    compute = feature_cache.compute_layers
    monkeypatch.setattr(feature_cache, "compute_layers", lambda *a, **k: passes.append(1) or compute(*a, **k))
    capfd.readouterr()

    again = cached_features(source, spec, cache)  # before: BadZipFile, EOFError, KeyError or the bad array itself

    warnings = warnings_of(capfd.readouterr().err)
    assert len(warnings) == 1 and str(path) in warnings[0], warnings
    assert passes == [1]  # computed again, once
    np.testing.assert_array_equal(again, expected)
    np.testing.assert_array_equal(cached_features(source, spec, cache), expected)  # rewritten whole: read, not run
    assert passes == [1] and not warnings_of(capfd.readouterr().err)


def test_the_feature_cache_writes_whole_files_and_sweeps_what_killed_writers_left(tmp_path, tiny_weights, monkeypatch):
    from artnet.training import feature_cache
    from artnet.training.feature_cache import FeatureSpec, cached_features

    source = synthetic_source(8, seed=4)
    spec = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32)
    cache = tmp_path / "cache"
    cache.mkdir()
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_pid = int(dead.stdout)  # a process that has ended: what it left behind is nobody's
    leftovers = [
        cache / f".{'a' * 32}.{dead_pid}.partial.npz",  # what artnet 0.1 named a cache file while writing it
        cache / f".{'b' * 32}.partial-{dead_pid}-0123abcd.npz",  # what atomic_files names one
    ]
    live = cache / f".{'c' * 32}.partial-{os.getpid()}-0123abcd.npz"  # a live writer's: left alone
    for path in [*leftovers, live]:
        path.write_bytes(b"half")

    # A kill while the features are written leaves no file that looks complete.
    save = np.savez

    def killed(file, **arrays):
        save(file, **arrays)
        raise KeyboardInterrupt  # the writer dies after its bytes, before the rename

    monkeypatch.setattr(feature_cache.np, "savez", killed)
    with pytest.raises(KeyboardInterrupt):
        cached_features(source, spec, cache)
    monkeypatch.undo()
    assert sorted(path.name for path in cache.iterdir()) == [live.name]  # the dead's swept, the killed one's gone

    features = cached_features(source, spec, cache)
    assert features.shape[:2] == (1, 8)
    assert sorted(path.suffix for path in cache.iterdir() if not path.name.startswith(".")) == [".json", ".npz"]
    assert sorted(path.name for path in cache.glob(".*")) == [live.name]


# --- Labelled folders -------------------------------------------------------------------------------------------


def test_a_labelled_folder_admits_only_its_own_files(tmp_path, capsys):
    from PIL import Image

    from artnet.data.sources import folder_source

    folder, outside = tmp_path / "paintings", tmp_path / "elsewhere"
    (folder / "images").mkdir(parents=True)
    outside.mkdir()
    Image.new("RGB", (8, 8), (200, 0, 0)).save(outside / "secret.png")  # not the folder's: must never be read
    Image.new("RGB", (8, 8), (10, 0, 0)).save(folder / "images" / "kept.png")
    Image.new("RGB", (8, 8), (20, 0, 0)).save(folder / "images" / "also.png")
    (folder / "images" / "link-out.png").symlink_to(outside / "secret.png")
    (folder / "images" / "link-in.png").symlink_to(folder / "images" / "also.png")  # inside: fine
    rows = [
        ("images/kept.png", "Dutch"),
        ("../elsewhere/secret.png", "French"),
        (str(outside / "secret.png"), "German"),
        ("images/link-out.png", "Italian"),
        ("images/../../elsewhere/secret.png", "Spanish"),
        ("./images//link-in.png", "Flemish"),  # normalised to images/link-in.png
        ("images/absent.png", "Dutch"),
    ]
    (folder / "labels.csv").write_text("file,school\n" + "".join(f"{name},{school}\n" for name, school in rows))

    source = folder_source(folder)  # before: the absolute and ../ names were read, trained on and exported

    out = capsys.readouterr().out
    assert "4 rows of" in out and "refused" in out, out
    assert "2 '..' paths" in out and "1 absolute paths" in out and "1 symlinks out of the folder" in out, out
    assert "1 files listed" in out and "missing" in out  # the absent one, counted apart
    assert [item["file"] for item in source.meta] == ["images/kept.png", "./images//link-in.png"]
    reds = [int(tf.io.decode_png(image)[0, 0, 0]) for image in source.images]
    assert reds == [10, 20]  # each label with its own image, and nothing from outside the folder
    from artnet import labels

    assert [labels.SCHOOLS[value] for value in source.labels["school"]] == ["Dutch", "Flemish"]


# --- The cluster ----------------------------------------------------------------------------------------------------


def test_a_well_formed_tf_config_is_read_as_its_cluster():
    cluster = parse_tf_config(
        json.dumps(
            {
                "cluster": {"chief": ["[::1]:2222"], "worker": ["node-2:2223", "10.0.0.3:2224"]},
                "task": {"type": "worker", "index": 1},
            }
        )
    )
    assert (cluster.task, cluster.address) == ("worker1", "10.0.0.3:2224")
    assert cluster.peers == {"chief0": "[::1]:2222", "worker0": "node-2:2223"}


def test_the_tensorflow_internals_the_cluster_relies_on_are_there():
    """`strategy._gathering` and `release_cluster` reach into TensorFlow 2.21's MultiWorkerMirroredStrategy (no
    public API has a deadline for the gathering or stops its health check): if an upgrade moves them, this says so
    first (the cluster tests below would then hang or log errors)."""
    import inspect

    from tensorflow.python.distribute import collective_all_reduce_strategy
    from tensorflow.python.eager import context

    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    assert isinstance(extended._check_health_initial_timeout, int | float)
    start = inspect.getsource(extended._start_check_health_thread)
    assert "_check_health_initial_timeout" in start and "Timeout waiting for the cluster" in start
    assert "_check_health_thread_should_stop" in start and "self._check_health_thread = " in start
    initialize = inspect.getsource(extended._initialize_multi_worker)
    assert "coordination_service is None" in initialize  # a service configured beforehand is kept
    assert "coordination_config.service_type" in initialize  # ... and an empty one turns it, and its notifier, off
    assert "service_type" in inspect.signature(context.Context.configure_coordination_service).parameters


def test_releasing_the_cluster_stops_its_health_check_without_waiting_for_it():
    import threading
    from types import SimpleNamespace

    from artnet.training.strategy import release_cluster

    stop, asleep = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: asleep.wait(60), daemon=True)  # a check between rounds: asleep
    thread.start()
    extended = SimpleNamespace(_check_health_thread_should_stop=stop, _check_health_thread=thread)
    started = time.monotonic()
    release_cluster(SimpleNamespace(extended=extended))
    assert stop.is_set() and extended._check_health_thread is None  # told to stop; nothing left to join
    assert time.monotonic() - started < 1
    asleep.set()
    release_cluster(SimpleNamespace(extended=None))  # a strategy without a health check: nothing to do


MALFORMED = [
    ('{"cluster": {"worker": "127.0.0.1:2222"}, "task": {"type": "worker", "index": 0}}', "must be a list"),
    ("{'cluster': {}}", "is not JSON"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}}', "no `task`"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "worker", "index": 1}}', "task.index"),
    ('{"cluster": {"worker": ["127.0.0.1:2222"]}, "task": {"type": "chief", "index": 0}}', "task.type"),
    ('{"cluster": {"worker": ["127.0.0.1"]}, "task": {"type": "worker", "index": 0}}', "not a host:port"),
    ('{"cluster": {"worker": ["a:1", "a:1"]}, "task": {"type": "worker", "index": 0}}', "two tasks"),
    ('{"cluster": {"ps": ["a:1"], "worker": ["b:1"]}, "task": {"type": "worker", "index": 0}}', "'ps' job"),
    ("[]", "JSON object"),
]


def multi_worker_recipe(folder: Path, path: Path, epochs: int = 1) -> Path:
    path.write_text(
        textwrap.dedent(
            f"""
            from artnet.testing.configs import tiny_config

            def get_config(arg=None):
                return tiny_config(
                    data={{"source": "folder", "folder": {str(folder)!r}, "batch_size": 4}},
                    dropout=0.0,
                    epochs={epochs},
                    strategy="multi_worker",
                    precision="float32",
                )
            """
        )
    )
    return path


@pytest.mark.parametrize(("tf_config", "says"), MALFORMED)
def test_a_malformed_tf_config_is_one_line_and_exit_2(tmp_path, monkeypatch, capsys, tf_config, says):
    from artnet import cli

    recipe = multi_worker_recipe(tmp_path / "nowhere", tmp_path / "recipe.py")
    monkeypatch.setenv("TF_CONFIG", tf_config)
    arguments = ["train", "--config", str(recipe), "--workdir", str(tmp_path / "run"), "--peer-timeout", "5"]
    assert cli.main(arguments) == 2  # (the timeout: were the check gone, a lone worker would not wait long)
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("artnet train: error: TF_CONFIG") and says in err, err


def test_a_malformed_tf_config_is_refused_before_tensorflow_loads(tmp_path):
    recipe = multi_worker_recipe(tmp_path / "nowhere", tmp_path / "recipe.py")
    env = dict(os.environ, TF_CONFIG=MALFORMED[0][0], PYTHONPATH=str(ROOT))
    code = "import sys; from artnet import cli; code = cli.main(sys.argv[1:]); print('tensorflow' in sys.modules); "
    code += "sys.exit(code)"
    done = subprocess.run(
        [sys.executable, "-c", code, "train", "--config", str(recipe), "--workdir", str(tmp_path / "run")],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 2 and done.stdout.strip() == "False", done.stdout + done.stderr
    assert done.stderr.splitlines() == [
        'artnet train: error: TF_CONFIG cluster.worker must be a list of "host:port" addresses, got '
        "'127.0.0.1:2222' (e.g. [\"127.0.0.1:2222\"])"
    ]


def train_command(recipe: Path, workdir: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "artnet.cli", "train", "--config", str(recipe), "--workdir", str(workdir), *extra]


def wait_all(processes, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    try:
        return [process.wait(timeout=max(1.0, deadline - time.monotonic())) for process in processes]
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_two_workers_train_through_the_artnet_train_command_and_both_exit_0(tmp_path):
    folder = write_synthetic_folder(tmp_path / "paintings", 64, authors=16)
    recipe = multi_worker_recipe(folder, tmp_path / "recipe.py")
    workdir = tmp_path / "run"
    command = train_command(recipe, workdir, "--peer-timeout", "300")
    workers = start_workers(workdir, 2, free_ports(2), [], tmp_path, command=command)

    codes = wait_all(workers, 600)

    logs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    assert codes == [0, 0], "\n\n".join(log[-3000:] for log in logs)  # before: worker 1 ended in KeyError 'heads'
    assert "test: {" in logs[0] and "'school'" in logs[0]  # the chief evaluated and exported
    assert "worker1: trained; the chief evaluates on test and exports" in logs[1]
    assert "Traceback" not in logs[0] + logs[1]
    for index, log in enumerate(logs):  # what TensorFlow's server exposes is said, by every worker
        assert f"[worker{index}] TensorFlow {tf.__version__} listens on port" in log
        assert "of every network interface" in log and "authenticates no peer" in log
        assert "on 2 replica(s)" in log
    assert (workdir / "export" / "model.keras").is_file()
    assert json.loads((workdir / "eval_test" / "report.json").read_text())["heads"]


def listening_addresses(port: int) -> set[str]:
    """The local addresses on which something listens on TCP `port` (Linux: /proc/net/tcp and tcp6)."""
    found = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, _, hex_port = local.rpartition(":")
            if state == "0A" and int(hex_port, 16) == port:  # 0A: LISTEN
                found.add(address)
    return found


@pytest.mark.skipif(not Path("/proc/net/tcp").is_file(), reason="reads Linux's socket tables")
def test_a_worker_never_waits_without_end_and_obeys_sigterm_waiting_or_training(tmp_path):
    """Three workers at once (one TensorFlow start-up's worth of time): a lone worker of a pair gives up after its
    --peer-timeout naming the peer that never came; another is stopped by SIGTERM while it waits; a one-worker
    cluster is stopped by SIGTERM mid-training. Before: the first two waited for ever, and TensorFlow's
    preemption notifier swallowed every SIGTERM."""
    folder = write_synthetic_folder(tmp_path / "paintings", 48, authors=12)
    ports = free_ports(5)
    pair_of = {"lonely": ports[0:2], "stopped": ports[2:4]}
    env = dict(os.environ, PYTHONPATH=str(ROOT), TF_CPP_MIN_LOG_LEVEL="2")

    def start(name: str, cluster: list[int], *extra: str, epochs: int = 1) -> subprocess.Popen:
        recipe = multi_worker_recipe(folder, tmp_path / f"{name}.py", epochs=epochs)
        tf_config = {"cluster": {"worker": [f"127.0.0.1:{port}" for port in cluster]}}
        tf_config["task"] = {"type": "worker", "index": 0}
        with open(tmp_path / f"{name}.log", "w") as log:
            return subprocess.Popen(
                train_command(recipe, tmp_path / name, *extra),
                env=dict(env, TF_CONFIG=json.dumps(tf_config)),
                stdout=log,
                stderr=subprocess.PIPE if name == "lonely" else subprocess.STDOUT,
                text=True,
            )

    def log_of(name: str) -> str:
        return (tmp_path / f"{name}.log").read_text()

    def wait_for(name: str, process: subprocess.Popen, text: str) -> None:
        deadline = time.monotonic() + 300
        while text not in log_of(name):
            assert process.poll() is None, f"{name} ended first:\n{log_of(name)[-3000:]}"
            assert time.monotonic() < deadline, f"{name}: no {text!r} in time:\n{log_of(name)[-3000:]}"
            time.sleep(0.1)

    lonely = start("lonely", pair_of["lonely"], "--peer-timeout", "4")
    stopped = start("stopped", pair_of["stopped"], "--peer-timeout", "600")
    training = start("training", ports[4:5], epochs=500)
    processes = [lonely, stopped, training]
    try:
        wait_for("stopped", stopped, "[worker0] waiting up to 600 s")
        time.sleep(1.0)  # inside TensorFlow's start-up now, its server listening
        # TensorFlow binds every interface whatever TF_CONFIG names (the log line and docs say so); if a later
        # TensorFlow binds only 127.0.0.1, this fails: then make the note say what it does.
        assert listening_addresses(pair_of["stopped"][0]) <= {"00000000", "00000000000000000000000000000000"}
        assert listening_addresses(pair_of["stopped"][0]), "nothing listens on the worker's port"
        stopped.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert stopped.wait(timeout=30) == -signal.SIGTERM, log_of("stopped")[-3000:]
        assert time.monotonic() - sent < 10

        wait_for("training", training, "phase fine_tune: epochs 1-500")
        training.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert training.wait(timeout=30) == -signal.SIGTERM, log_of("training")[-3000:]
        assert time.monotonic() - sent < 10
        assert not (tmp_path / "training" / "model.keras").exists()  # stopped, not finished

        _, err = lonely.communicate(timeout=120)
        assert lonely.returncode == 2, err[-3000:]
        peer = f"127.0.0.1:{pair_of['lonely'][1]}"
        assert err.strip().splitlines()[-1] == (
            f"artnet train: error: [worker0] the cluster did not gather within 4 s: no answer from worker1 ({peer}). "
            "Start every task of TF_CONFIG (each with its own task), or give them longer with --peer-timeout"
        )
        assert "[worker0] waiting up to 4 s for the cluster's other 1 task(s): worker1" in log_of("lonely")
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
