"""Full-scale paths, dry-run here: opt-in with `make test-all` (or `pytest -m slow`)."""

import json
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

pytestmark = pytest.mark.slow


def test_nasnet_large_dry_run_build_step_save_load(tmp_path):
    """The headline backbone: build at 331 px, one training step, save, load, same probabilities."""
    from artnet.export import load_model
    from artnet.models.artnet import ArtNet

    model = ArtNet("nasnet_large", image_size=331, backbone_weights=None)
    assert 84e6 < model.count_params() < 86e6  # ~85.0 M with three heads
    model.compile(optimizer="sgd", loss={h: "sparse_categorical_crossentropy" for h in model.heads})
    rng = np.random.default_rng(0)
    x = rng.uniform(0, 255, (2, 331, 331, 3)).astype(np.float32)
    y = {h: np.zeros(2, np.int64) for h in model.heads}
    history = model.fit(x, y, epochs=1, batch_size=2, verbose=0)
    assert np.isfinite(history.history["loss"][0])
    model.save(tmp_path / "nasnet.keras")
    reloaded = load_model(tmp_path / "nasnet.keras")
    expected, again = model.predict(x, verbose=0), reloaded.predict(x, verbose=0)
    for head in model.heads:
        np.testing.assert_allclose(again[head], expected[head], atol=1e-5)


WORKER = textwrap.dedent(
    """
    import json, sys
    from artnet.train import make_strategy
    strategy = make_strategy("multi_worker")  # before any other TensorFlow work
    from artnet.config import DataConfig, TrainConfig
    from artnet.config import Augment
    from artnet.synthetic import synthetic_source
    from artnet.train import train
    config = TrainConfig(backbone="tiny", backbone_weights=None, image_size=32, optimizer="adam",
        learning_rate=0.01, fine_tune_learning_rate=0.01, schedule="constant", epochs=2, head_epochs=0,
        early_stopping_patience=0, strategy="multi_worker", data=DataConfig(batch_size=8, cache=False,
        augment=Augment(flip=False)))
    sources = {s: synthetic_source(64, seed=i) for i, s in enumerate(("train", "validation", "test"))}
    assert strategy.num_replicas_in_sync == 2  # the cluster formed
    train(config, sys.argv[1], sources, strategy=strategy)
    """
)


def test_multi_worker_joins_a_localhost_cluster_and_says_why_keras_cannot_fit(tmp_path, free_port):
    """Two worker processes form the cluster; Keras 3.15's fit() cannot run under it (keras-team/keras#20585),
    so each worker stops with that explanation instead of a PerReplica conversion error deep in Keras. When a
    Keras upgrade fixes it, this test is the one to turn back into a training run."""
    script = tmp_path / "worker.py"
    script.write_text(WORKER)
    cluster = {"worker": [f"127.0.0.1:{free_port()}", f"127.0.0.1:{free_port()}"]}
    workers, logs = [], []
    for index in range(2):
        env = dict(os.environ, TF_CONFIG=json.dumps({"cluster": cluster, "task": {"type": "worker", "index": index}}))
        log = (tmp_path / f"worker{index}.log").open("w")
        logs.append(log)
        command = [sys.executable, str(script), str(tmp_path / f"worker{index}")]
        workers.append(subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, text=True))
    try:
        codes = [worker.wait(timeout=600) for worker in workers]
    finally:
        for worker, log in zip(workers, logs, strict=True):
            worker.kill()
            log.close()
    outputs = [(tmp_path / f"worker{index}.log").read_text() for index in range(2)]
    for output in outputs:
        assert "replica(s)" not in output  # no training phase started
        assert "keras-team/keras#20585" in output, output[-3000:]
    assert codes == [1, 1]
