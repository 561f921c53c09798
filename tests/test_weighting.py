"""Loss-weighting strategies on two-task toy problems: each one's defining behaviour, masking, logs, devices."""

from __future__ import annotations

import json
import subprocess
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf

from artnet.models.weighting import STRATEGIES, MultiTaskModel, dwa_weights, pcgrad_project

HEADS = ("a", "b")
CLASSES = 3


def network(seed=0, hidden=8):
    keras.utils.set_random_seed(seed)
    inputs = keras.Input((4,), name="x")
    trunk = keras.layers.Dense(hidden, activation="tanh", name="trunk")(inputs)
    outputs = {h: keras.layers.Dense(CLASSES, activation="softmax", dtype="float32", name=h)(trunk) for h in HEADS}
    return keras.Model(inputs, outputs, name="toy")


def compile_args(optimizer=None, loss_weights=None):
    return dict(
        optimizer=optimizer or keras.optimizers.SGD(0.1),
        loss={h: keras.losses.SparseCategoricalCrossentropy(name=f"{h}_loss") for h in HEADS},
        loss_weights=loss_weights or {h: 1.0 for h in HEADS},
        weighted_metrics={
            h: [
                keras.metrics.SparseCategoricalAccuracy(name="top1"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
            ]
            for h in HEADS
        },
    )


def wrapped(strategy, seed=0, optimizer=None, loss_weights=None):
    model = MultiTaskModel(network(seed), strategy=strategy, heads=HEADS, seed=seed)
    model.compile(**compile_args(optimizer, loss_weights))
    return model


def toy_data(n=64, seed=0, noisy_b=False):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 4)).astype(np.float32)
    a = (x[:, 0] > 0).astype(np.int32) + (x[:, 1] > 0.5).astype(np.int32)
    b = rng.integers(0, CLASSES, n).astype(np.int32) if noisy_b else (x[:, 2] > 0).astype(np.int32) * 2
    y = {"a": a, "b": b}
    w = {h: np.ones(n, np.float32) for h in HEADS}
    return x, y, w


def shared_and_heads(model):
    return [v.numpy() for v in model.network.trainable_variables]


# --- PCGrad ---


def test_pcgrad_removes_the_conflicting_component_exactly():
    grads = tf.constant([[1.0, 0.0], [-1.0, 1.0]])
    projected, conflicts = pcgrad_project(grads)
    # g1 - (g1·g2 / |g2|²) g2 = [1, 0] + 0.5 [-1, 1]; g2 - (g2·g1 / |g1|²) g1 = [-1, 1] + [1, 0]
    np.testing.assert_allclose(projected.numpy(), [[0.5, 0.5], [0.0, 1.0]], atol=1e-7)
    assert float(conflicts) == 1.0
    assert abs(float(tf.reduce_sum(projected[0] * grads[1]))) < 1e-7  # nothing left against g2
    assert abs(float(tf.reduce_sum(projected[1] * grads[0]))) < 1e-7


def test_pcgrad_leaves_agreeing_gradients_untouched():
    grads = tf.constant([[1.0, 0.0, 2.0], [1.0, 1.0, 0.0], [0.0, 3.0, 1.0]])
    projected, conflicts = pcgrad_project(grads, tf.constant([[2, 1, 0], [0, 2, 1], [1, 0, 2]]))
    np.testing.assert_array_equal(projected.numpy(), grads.numpy())
    assert float(conflicts) == 0.0


def test_pcgrad_step_applies_the_projected_shared_gradient_and_own_head_gradients():
    model = wrapped("pcgrad", optimizer=keras.optimizers.SGD(1.0))
    x, y, w = toy_data(16)
    reference = network(0)
    shared = [v for v in reference.trainable_variables if "trunk" in v.path]
    with tf.GradientTape(persistent=True) as tape:
        pred = reference(x, training=True)
        losses = [model.head_losses[h](y[h], pred[h], sample_weight=w[h]) for h in HEADS]
    per_task = [tape.gradient(loss, shared) for loss in losses]
    flat = tf.stack([tf.concat([tf.reshape(g, [-1]) for g in grads], 0) for grads in per_task])
    projected, _ = pcgrad_project(flat)  # with two tasks the order does not matter
    expected_shared = [v.numpy() for v in shared]
    step = tf.reduce_sum(projected, 0).numpy()
    expected_shared[0] -= step[: expected_shared[0].size].reshape(expected_shared[0].shape)
    expected_shared[1] -= step[expected_shared[0].size :]
    expected_heads = {
        h: [v.numpy() - tape.gradient(losses[t], v).numpy() for v in reference.get_layer(h).trainable_variables]
        for t, h in enumerate(HEADS)
    }
    model.train_on_batch(x, y, w)
    for got, want in zip(model.network.get_layer("trunk").trainable_variables, expected_shared, strict=True):
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)
    for h in HEADS:
        for got, want in zip(model.network.get_layer(h).trainable_variables, expected_heads[h], strict=True):
            np.testing.assert_allclose(got.numpy(), want, rtol=1e-5, atol=1e-6)


# --- uncertainty ---


def test_uncertainty_moves_weight_toward_the_clean_task():
    model = wrapped("uncertainty", optimizer=keras.optimizers.Adam(0.05))
    x, y, w = toy_data(256, noisy_b=True)
    history = model.fit(x, y, sample_weight=w, batch_size=64, epochs=25, verbose=0)
    weights = np.exp(-model.log_variances.numpy())
    assert weights[0] > 1.5 * weights[1], weights  # a (clean) is trusted more than b (random labels)
    assert history.history["weight_a"][-1] > history.history["weight_b"][-1]
    assert model.log_variances.dtype == "float32"


# --- DWA ---


def test_dwa_weights_raise_the_task_whose_loss_falls_slower():
    weights = dwa_weights(previous=[0.9, 0.5], before=[1.0, 1.0])
    assert weights[0] > weights[1] and abs(weights.sum() - 2.0) < 1e-6
    np.testing.assert_allclose(dwa_weights([0.8, 0.4], [1.0, 0.5]), [1.0, 1.0], rtol=1e-6)  # same rate, same weight
    ratios = np.array([0.9, 0.5]) / 2.0
    np.testing.assert_allclose(weights, 2 * np.exp(ratios) / np.exp(ratios).sum(), rtol=1e-6)


def test_dwa_is_equal_for_two_epochs_then_follows_the_epoch_mean_losses():
    model = wrapped("dwa")
    x, y, w = toy_data(128, noisy_b=True)  # b's loss barely falls: it must gain weight
    logs = model.fit(x, y, sample_weight=w, batch_size=32, epochs=4, verbose=0).history
    for h in HEADS:
        assert logs[f"weight_{h}"][:2] == pytest.approx([1.0, 1.0])
    for epoch in (2, 3):
        expected = dwa_weights(
            [logs[f"{h}_loss"][epoch - 1] for h in HEADS], [logs[f"{h}_loss"][epoch - 2] for h in HEADS]
        )
        assert [logs[f"weight_{h}"][epoch] for h in HEADS] == pytest.approx(expected.tolist(), rel=1e-4)
    assert logs["weight_b"][2] > logs["weight_a"][2]
    assert int(model.dwa_epochs.numpy()) == 4


# --- fixed ---


def test_fixed_equals_the_compiled_weighted_sum():
    loss_weights = {"a": 2.0, "b": 0.5}
    x, y, w = toy_data(64)
    w["b"][::3] = 0.0
    plain = network(1)
    plain.compile(**compile_args(keras.optimizers.SGD(0.1), loss_weights))
    model = wrapped("fixed", seed=1, optimizer=keras.optimizers.SGD(0.1), loss_weights=loss_weights)
    assert model.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True) == pytest.approx(
        {k: v for k, v in plain.evaluate(x, y, sample_weight=w, batch_size=64, verbose=0, return_dict=True).items()}
    )
    ours = model.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    theirs = plain.fit(x, y, sample_weight=w, batch_size=16, epochs=2, shuffle=False, verbose=0).history
    for key in theirs:
        assert ours[key] == pytest.approx(theirs[key], rel=1e-5), key
    for got, want in zip(model.network.get_weights(), plain.get_weights(), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)
    assert ours["weight_a"] == pytest.approx([2.0, 2.0]) and ours["weight_b"] == pytest.approx([0.5, 0.5])


# --- all strategies ---


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_masked_labels_contribute_nothing(strategy):
    x, y, w = toy_data(32)
    w["b"][:16] = 0.0
    other = {"a": y["a"], "b": y["b"].copy()}
    other["b"][:16] = (other["b"][:16] + 1) % CLASSES  # different labels where they are masked
    results = []
    for labels_ in (y, other):
        model = wrapped(strategy, optimizer=keras.optimizers.Adam(0.01))
        for _ in range(2):
            logs = model.train_on_batch(x, labels_, w, return_dict=True)
        results.append(([v.numpy() for v in model.trainable_variables], logs))
    for got, want in zip(results[0][0], results[1][0], strict=True):
        np.testing.assert_array_equal(got, want)
    assert results[0][1] == results[1][1]


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_logs_keep_todays_keys_and_add_the_weights(strategy):
    model = wrapped(strategy)
    x, y, w = toy_data(32)
    logs = model.fit(x, y, sample_weight=w, validation_data=(x, y), batch_size=16, epochs=1, verbose=0).history
    expected = {"loss", "objective", "val_loss"}
    for h in HEADS:
        expected |= {f"{h}_loss", f"{h}_top1", f"{h}_top3", f"weight_{h}"}
        expected |= {f"val_{h}_loss", f"val_{h}_top1", f"val_{h}_top3"}
    if strategy == "pcgrad":
        expected.add("pcgrad_conflicts")
    assert set(logs) == expected
    assert all(np.isfinite(v[0]) for v in logs.values())


def test_unknown_strategy_is_refused():
    with pytest.raises(ValueError, match="unknown loss weighting"):
        MultiTaskModel(network(), strategy="nash")


def test_save_writes_the_wrapped_network(tmp_path):
    model = wrapped("uncertainty")
    x, y, w = toy_data(16)
    model.train_on_batch(x, y, w)
    model.save(str(tmp_path / "m.keras"))
    loaded = keras.saving.load_model(str(tmp_path / "m.keras"), compile=False)
    assert loaded.name == "toy"
    np.testing.assert_allclose(loaded.predict(x, verbose=0)["a"], model.predict(x, verbose=0)["a"], rtol=1e-6)


def test_backup_weights_carry_the_strategy_state(tmp_path):
    model = wrapped("dwa")
    x, y, w = toy_data(32)
    model.fit(x, y, sample_weight=w, batch_size=16, epochs=3, verbose=0)
    model.save_weights(str(tmp_path / "backup.weights.h5"))
    again = wrapped("dwa")
    again.fit(x, y, sample_weight=w, batch_size=16, epochs=1, verbose=0)  # built, as BackupAndRestore finds it
    again.load_weights(str(tmp_path / "backup.weights.h5"))
    np.testing.assert_array_equal(again.dwa_weights.numpy(), model.dwa_weights.numpy())
    assert int(again.dwa_epochs.numpy()) == 3 and not np.allclose(again.dwa_weights.numpy(), 1.0)


@pytest.mark.parametrize("strategy", STRATEGIES)
def test_mixed_float16_runs_a_step_with_finite_loss(strategy):
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        model = wrapped(strategy, optimizer=keras.optimizers.Adam(0.01))
        assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
        x, y, w = toy_data(32)
        logs = model.fit(x, y, sample_weight=w, batch_size=16, epochs=1, verbose=0).history
        assert np.isfinite(logs["loss"][0]) and np.isfinite(logs["objective"][0])
        assert int(model.optimizer.iterations.numpy()) == 2
    finally:
        keras.mixed_precision.set_global_policy(previous)


MIRRORED_SCRIPT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json, sys
import numpy as np
sys.path.insert(0, sys.argv[1])
from test_weighting import STRATEGIES, toy_data, wrapped
strategy = tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])
results = {"replicas": strategy.num_replicas_in_sync}
x, y, w = toy_data(64)
for name in STRATEGIES:
    with strategy.scope():
        model = wrapped(name)
    data = tf.data.Dataset.from_tensor_slices((x, y, w)).batch(16)
    logs = model.fit(data, validation_data=data, epochs=2, verbose=0).history
    single = wrapped(name)  # the same run on one device: the replicas must add up to it
    single.fit(data, epochs=2, verbose=0)
    gap = max(float(np.max(np.abs(a - b))) for a, b in zip(model.get_weights(), single.get_weights()))
    results[name] = {**{k: v[-1] for k, v in logs.items()}, "gap_to_one_device": gap}
print(json.dumps(results))
"""


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    from pathlib import Path

    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(Path(__file__).parent)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(done.stdout.strip().splitlines()[-1])
    assert results["replicas"] == 2
    for name in STRATEGIES:
        logs = results[name]
        assert all(np.isfinite(v) for v in logs.values()), (name, logs)
        assert logs["loss"] > 0 and logs["val_loss"] > 0
        assert logs["gap_to_one_device"] < 1e-4, (name, logs)  # PCGrad projects the global gradients


@pytest.mark.parametrize("strategy", ["pcgrad", "uncertainty"])
def test_artnet_through_compile_model_and_the_pipeline(strategy):
    from artnet.config import Augment, DataConfig, TrainConfig
    from artnet.data import pipeline
    from artnet.data.synthetic import synthetic_source
    from artnet.models.artnet import ArtNet
    from artnet.training.compile import compile_model

    config = TrainConfig(
        backbone="tiny", backbone_weights=None, image_size=32, optimizer="adamw", learning_rate=0.01,
        schedule="constant", data=DataConfig(batch_size=8, augment=Augment(flip=False)),
    )  # fmt: skip
    source = synthetic_source(16, seed=3)  # a fifth of the labels unknown: weight 0
    net = ArtNet(backbone="tiny", heads=("school", "type"), image_size=32)
    model = MultiTaskModel(net, strategy=strategy)
    compile_model(model, config, config.learning_rate, 4)
    if strategy == "pcgrad":  # the default shared set: everything but the heads' own Dense layers
        names = {v.path for v in model._shared_variables()}
        assert names and not any(n.startswith(("school/", "type/")) for n in names)
    data = pipeline.make_dataset(source, net.heads, 32, 8, training=False)
    logs = model.fit(data, validation_data=data, epochs=1, shuffle=False, verbose=0).history
    assert {"school_top1", "type_top3", "weight_school", "val_school_top1"} <= set(logs)
    assert np.isfinite(logs["loss"][0]) and np.isfinite(logs["val_loss"][0])
