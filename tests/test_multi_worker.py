"""strategy=multi_worker trains: two localhost workers (TF_CONFIG), tiny backbone, artnet's own loop
(artnet.training.loop).

Each test starts real worker processes (`artnet.testing.multi_worker`): ~30 s per cluster run on 2 cores.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from artnet.testing.multi_worker import free_ports, start_workers

# Max |weight difference| between two workers and one worker with the same global batch after 3 epochs (24 steps),
# float32, measured here: fixed + Adam 5.6e-7, uncertainty + Adam 6.9e-7, PCGrad + SGD 1.8e-7 (the all-reduce sums in
# another order). PCGrad + Adam differs by 3.6e-2: its projection rounds every coordinate, and Adam's first steps
# move a coordinate by ~lr whatever the size of its gradient, so rounding noise in near-zero coordinates becomes a
# full step. The algorithm is exact (the SGD run); the bound leaves room for other CPUs.
EQUAL_TO_ONE_WORKER = 1e-4


def wait_all(processes, timeout: float) -> list[int]:
    deadline = time.monotonic() + timeout
    codes = []
    try:
        for process in processes:
            codes.append(process.wait(timeout=max(1.0, deadline - time.monotonic())))
    finally:
        for process in processes:
            if process.poll() is None:
                process.kill()
                process.wait()
    return codes


def weights(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as data:
        return {key: data[key] for key in data.files}


def max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max(float(np.abs(a[key] - b[key]).max()) for key in a)


def latest_checkpoint_number(workdir: Path) -> int:
    index = workdir / "checkpoints" / "fine_tune" / "checkpoint"
    try:
        text = index.read_text()
    except OSError:
        return 0
    names = [line.split('"')[1] for line in text.splitlines() if line.startswith("model_checkpoint_path")]
    return int(names[0].rsplit("-", 1)[1]) if names else 0


def epochs_logged(workdir: Path) -> list[int]:
    return [json.loads(line)["epoch"] for line in (workdir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.parametrize(("loss_weighting", "optimizer"), [("fixed", "adam"), ("pcgrad", "sgd")])
def test_two_workers_train_identically_and_equal_one_worker_with_the_same_global_batch(
    tmp_path, loss_weighting, optimizer
):
    workdir, reference = tmp_path / "cluster", tmp_path / "one"
    common = ["--epochs", "3", "--exact", "--loss-weighting", loss_weighting, "--optimizer", optimizer]
    workers = start_workers(workdir, 2, free_ports(2), ["--batch-size", "8", *common], tmp_path)
    single_extra = ["--batch-size", "16", *common]
    env = dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2")
    env.pop("TF_CONFIG", None)
    single = subprocess.run(
        [sys.executable, "-m", "artnet.testing.multi_worker", str(reference), *single_extra],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    codes = wait_all(workers, 600)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    assert single.returncode == 0, single.stdout[-3000:] + single.stderr[-3000:]
    assert all("on 2 replica(s)" in log and "loop artnet" in log for log in logs)

    # It trains: the chief logged every epoch, with the fit path's names, and the loss fell.
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in records] == [1, 2, 3]
    assert {"loss", "school_loss", "school_top1", "val_loss", "val_type_top1", "weight_type"} <= set(records[0])
    assert ("pcgrad_conflicts" in records[0]) == (loss_weighting == "pcgrad")
    assert records[-1]["loss"] < records[0]["loss"]
    # Only the chief wrote the workdir: one log, the model, its checkpoints; then, alone, its test evaluation and
    # export (a copy outside the cluster: the other worker has left).
    assert (workdir / "model.keras").is_file() and (workdir / "checkpoints" / "fine_tune" / "checkpoint").is_file()
    report = json.loads((workdir / "eval_test" / "report.json").read_text())
    assert set(report["heads"]) == {"school", "timeframe", "type"}
    assert (workdir / "export" / "model.keras").is_file() and (workdir / "export" / "saved_model").is_dir()

    first, second = weights(workdir / "weights_worker0.npz"), weights(workdir / "weights_worker1.npz")
    assert max_difference(first, second) == 0.0  # both workers hold the same model
    alone = weights(reference / "weights_local.npz")
    assert max_difference(first, alone) < EQUAL_TO_ONE_WORKER


def test_a_worker_killed_mid_epoch_and_the_job_restarted_resumes_from_the_last_checkpoint(tmp_path):
    workdir = tmp_path / "cluster"
    epochs = 8
    extra = ["--batch-size", "8", "--epochs", str(epochs), "--examples", "256", "--backup-every-steps", "4"]
    extra += ["--loss-weighting", "dwa", "--precision", "mixed_float16"]  # the loss scale is checkpointed too
    workers = start_workers(workdir, 2, free_ports(2), extra, tmp_path)
    # 16 steps an epoch, a checkpoint every 4 steps and at each epoch's end: 4 per epoch, so ckpt-9 is the first
    # one inside epoch 3. Kill a worker as soon as it exists: mid-epoch, its peer loses the collective.
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline and latest_checkpoint_number(workdir) < 9:
        assert all(worker.poll() is None for worker in workers), "a worker ended before the kill"
        time.sleep(0.05)
    workers[1].send_signal(signal.SIGKILL)
    killed_after = epochs_logged(workdir)
    assert len(killed_after) < epochs, "the run ended before the kill: give it more epochs"
    # The surviving worker cannot finish without its peer (it waits in a collective); the cluster manager
    # restarts the whole job.
    time.sleep(3)
    assert workers[0].poll() is None or workers[0].returncode != 0  # it never ends as if all were well
    workers[0].kill()
    workers[0].wait()
    restarted = start_workers(workdir, 2, free_ports(2), extra, tmp_path)
    codes = wait_all(restarted, 600)
    logs = [(tmp_path / f"worker{i}.log").read_text() for i in range(2)]
    assert codes == [0, 0], "\n".join(log[-3000:] for log in logs)
    resumed = [line for line in logs[0].splitlines() if "resumed from" in line]
    assert resumed and all("resumed from" in log for log in logs), logs[0][-2000:]
    assert "step 0)" not in resumed[-1], resumed  # mid-epoch: the batches trained before the kill are skipped

    logged = epochs_logged(workdir)
    assert logged[-1] == epochs
    # Nothing finished before the kill is trained again: each epoch it had logged appears once.
    assert all(logged.count(epoch) == 1 for epoch in killed_after)
    assert sorted(set(logged)) == list(range(1, epochs + 1))
    assert max_difference(weights(workdir / "weights_worker0.npz"), weights(workdir / "weights_worker1.npz")) == 0
    records = [json.loads(line) for line in (workdir / "metrics.jsonl").read_text().splitlines()]
    assert records[-1]["loss"] < records[0]["loss"] and all(np.isfinite(r["loss"]) for r in records)
    assert "precision mixed_float16" in logs[0]


def test_on_one_machine_artnets_loop_trains_what_keras_fit_trains(tmp_path):
    """The two loops must not drift apart: one process, the same config and data, loop=custom vs loop=keras
    (fit with its callbacks) end with the same weights and the same logged losses."""
    import keras

    from artnet.data.synthetic import synthetic_source
    from artnet.testing.configs import tiny_config
    from artnet.training.train import train

    sources = {
        split: synthetic_source(64 if split == "train" else 32, seed=i)
        for i, split in enumerate(("train", "validation", "test"))
    }
    results = {}
    for loop in ("keras", "custom"):
        keras.backend.clear_session()
        config = tiny_config(
            epochs=3,
            dropout=0.0,
            strategy="none",
            precision="float32",
            loop=loop,
            data={"batch_size": 16, "shuffle_buffer": 1},
        )
        model = train(config, tmp_path / loop, sources)
        records = [json.loads(line) for line in (tmp_path / loop / "metrics.jsonl").read_text().splitlines()]
        results[loop] = ({f"w{i}": w for i, w in enumerate(model.get_weights())}, records)
    (fit_weights, fit_log), (loop_weights, loop_log) = results["keras"], results["custom"]
    assert max_difference(fit_weights, loop_weights) < EQUAL_TO_ONE_WORKER
    assert [r["epoch"] for r in loop_log] == [r["epoch"] for r in fit_log] == [1, 2, 3]
    for fit_record, loop_record in zip(fit_log, loop_log, strict=True):
        for key in ("loss", "school_loss", "val_loss", "val_type_top1"):
            assert loop_record[key] == pytest.approx(fit_record[key], rel=1e-4, abs=1e-6), key


def test_a_slurm_job_step_is_a_cluster_without_tf_config(monkeypatch):
    from artnet.training.strategy import multi_worker_resolver

    monkeypatch.delenv("TF_CONFIG", raising=False)
    for key in [k for k in os.environ if k.startswith("SLURM_")]:
        monkeypatch.delenv(key)
    with pytest.raises(ValueError, match="TF_CONFIG .* or a Slurm job step"):
        multi_worker_resolver()
    monkeypatch.setenv("SLURM_PROCID", "1")
    monkeypatch.setenv("SLURM_STEP_NUM_TASKS", "2")
    monkeypatch.setenv("SLURM_STEP_NODELIST", "node[1-2]")
    monkeypatch.setenv("SLURM_STEP_TASKS_PER_NODE", "1(x2)")
    resolver = multi_worker_resolver()
    assert resolver.cluster_spec().as_dict() == {"worker": ["node1:2222", "node2:2222"]}
    assert (resolver.task_type, resolver.task_id) == ("worker", 1)
    cluster = {"cluster": {"worker": ["a:1", "b:1"]}, "task": {"type": "worker", "index": 0}}
    monkeypatch.setenv("TF_CONFIG", json.dumps(cluster))  # TF_CONFIG, when set, wins
    assert multi_worker_resolver().cluster_spec().as_dict() == {"worker": ["a:1", "b:1"]}
