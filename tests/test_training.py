"""ArtNet, the input pipeline and training, on the synthetic task and a tiny backbone (fast)."""

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from artnet import labels
from artnet.config import Augment, apply_overrides, from_dict, load_config
from artnet.data import pipeline, preprocessing
from artnet.data.sources import Source, folder_source
from artnet.data.synthetic import synthetic_source
from artnet.evaluation.evaluate import evaluate
from artnet.models.artnet import ArtNet
from artnet.models.backbones import BackboneError, build_backbone
from artnet.serving.export import export, load_model
from artnet.testing.configs import NO_AUGMENT, tiny_config
from artnet.training.train import train


@pytest.fixture(scope="module")
def synthetic():
    return {
        "train": synthetic_source(600, seed=0),
        "validation": synthetic_source(150, seed=1),
        "test": synthetic_source(200, seed=2),
    }


@pytest.fixture(scope="module")
def trained(synthetic, tmp_path_factory):
    workdir = tmp_path_factory.mktemp("synthetic-run")
    model = train(tiny_config(), workdir, synthetic)
    return model, workdir


def test_synthetic_task_is_learnt_by_every_head(trained, synthetic, tmp_path):
    model, workdir = trained
    report = evaluate(model, synthetic["test"], tmp_path / "eval")
    chance = {head: 1 / len(labels.VOCABULARIES[head]) for head in labels.HEADS}
    for head, result in report["heads"].items():
        assert result["n"] == int((synthetic["test"].labels[head] >= 0).sum())  # unknowns excluded
        assert result["top1"] > 3 * chance[head], (head, result["top1"])
    for name in ("report.json", "report.md", "reliability_school.png", "confusion_timeframe.png"):
        assert (tmp_path / "eval" / name).stat().st_size > 0
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 15 and json.loads(lines[-1])["epoch"] == 15
    assert json.loads((workdir / "config.json").read_text())["backbone"] == "tiny"


def test_keras_and_savedmodel_round_trips_give_the_same_probabilities(trained, tmp_path):
    model, _ = trained
    out = export(model, tmp_path / "export")
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(4, 45, 37, 3), dtype=np.uint8)
    pixels = tf.cast(preprocessing.resize_and_crop(images, 32), tf.float32)
    expected = model.predict(pixels, verbose=0)
    reloaded = load_model(out / "model.keras")
    assert isinstance(reloaded, ArtNet) and reloaded.heads == model.heads
    again = reloaded.predict(pixels, verbose=0)
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"](images=tf.constant(images))
    for head in labels.HEADS:
        np.testing.assert_allclose(again[head], expected[head], atol=1e-6)
        np.testing.assert_allclose(served[head].numpy(), expected[head], atol=1e-5)
    names = tf.saved_model.load(str(out / "saved_model")).signatures["labels"]()
    assert [n.decode() for n in names["school"].numpy()] == list(labels.SCHOOLS)
    assert json.loads((out / "labels.json").read_text())["type"] == list(labels.TYPES)


def test_heads_are_ordered_named_and_float32():
    model = ArtNet("tiny", heads=("type", "school"), image_size=32)
    assert model.heads == ("school", "type")
    outputs = model(np.zeros((2, 32, 32, 3), np.float32))
    assert list(outputs) == ["school", "type"]
    assert outputs["school"].shape == (2, 6) and outputs["type"].shape == (2, 7)
    with pytest.raises(ValueError, match="unknown head 'style' \\(did you mean 'type'\\?\\)"):
        ArtNet("tiny", heads=("style",), image_size=32)


def _fixed_model(school_class: int, type_class: int) -> ArtNet:
    """A model whose school head always answers `school_class` and type head `type_class`."""
    model = ArtNet("tiny", heads=("school", "type"), image_size=32, dropout=0.0)
    for head, answer in (("school", school_class), ("type", type_class)):
        layer = model.get_layer(head)
        kernel, bias = layer.get_weights()
        bias = np.full_like(bias, -20.0)
        bias[answer] = 20.0
        layer.set_weights([np.zeros_like(kernel), bias])
    model.compile(
        loss={h: "sparse_categorical_crossentropy" for h in model.heads},
        weighted_metrics={h: [keras.metrics.SparseCategoricalAccuracy(name="top1")] for h in model.heads},
    )
    return model


def test_routing_a_label_reaches_the_head_of_its_name():
    model = _fixed_model(school_class=0, type_class=3)
    images = np.zeros((8, 32, 32, 3), np.float32)
    right = model.evaluate(images, {"type": np.full(8, 3), "school": np.zeros(8)}, return_dict=True, verbose=0)
    assert right["school_top1"] == 1.0 and right["type_top1"] == 1.0
    swapped = model.evaluate(images, {"type": np.zeros(8), "school": np.full(8, 3)}, return_dict=True, verbose=0)
    assert swapped["school_top1"] == 0.0 and swapped["type_top1"] == 0.0


def test_unknown_labels_add_no_loss_and_count_in_no_metric():
    model = _fixed_model(school_class=0, type_class=3)
    n = 8
    source = Source(
        name="masking",
        images=tf.data.Dataset.from_tensor_slices(tf.constant([_png()] * n)),
        labels={
            "school": np.array([0, 0, 0, 0, 5, -1, -1, -1]),  # 4 right, 1 wrong, 3 unknown
            "timeframe": np.full(n, -1),
            "type": np.full(n, -1),  # all unknown
        },
    )
    batches = pipeline.make_dataset(source, ("school", "type"), 32, n, training=False)
    result = model.evaluate(batches, return_dict=True, verbose=0)
    assert result["school_top1"] == pytest.approx(4 / 5)
    assert result["type_loss"] == pytest.approx(0.0, abs=1e-6)
    _, targets, weights = next(iter(batches))
    assert targets["type"].numpy().tolist() == [0] * n  # masked labels become a valid index...
    assert weights["type"].numpy().tolist() == [0.0] * n  # ...with weight 0


def _png() -> bytes:
    return tf.io.encode_png(np.full((40, 40, 3), 128, np.uint8)).numpy()


def test_class_weights_on_a_known_distribution():
    label_array = np.array([0] * 6 + [1] * 3 + [2] * 1 + [-1] * 10)
    weights = pipeline.class_weights(label_array, 4)
    np.testing.assert_allclose(weights, [10 / 18, 10 / 9, 10 / 3, 0.0])
    assert pipeline.class_weights(label_array, 4, power=0).tolist() == [1.0, 1.0, 1.0, 0.0]
    table = pipeline.head_weight_tables({"school": label_array}, ("school",))["school"]
    per_example = pipeline.sample_weights(label_array, table)
    assert per_example.mean() == pytest.approx(1.0)  # the loss keeps its scale
    assert (per_example[label_array < 0] == 0).all()
    assert per_example[label_array == 2][0] / per_example[label_array == 0][0] == pytest.approx(6.0)


def test_pipeline_weights_match_the_numpy_twin():
    source = synthetic_source(64, seed=3)
    tables = pipeline.head_weight_tables(source.labels, labels.HEADS)
    batches = list(pipeline.make_dataset(source, labels.HEADS, 32, 64, training=False, weight_tables=tables))
    _, _, weights = batches[0]
    for head in labels.HEADS:
        np.testing.assert_allclose(weights[head].numpy(), pipeline.sample_weights(source.labels[head], tables[head]))


def test_augmentation_is_training_only_and_keeps_shape():
    source = synthetic_source(16, size=48, seed=4)
    plain = next(iter(pipeline.make_dataset(source, labels.HEADS, 32, 16, training=False)))[0].numpy()
    augmented = next(iter(pipeline.make_dataset(source, labels.HEADS, 32, 16, training=True, augment=Augment())))
    assert augmented[0].shape == plain.shape == (16, 32, 32, 3)
    identity = preprocessing.affine_warp(tf.constant(plain), NO_AUGMENT).numpy()
    np.testing.assert_allclose(identity, plain, atol=1e-3)


def test_mixup_blends_each_example_with_a_partner_and_splits_its_weight_between_their_labels():
    x = tf.constant(np.arange(6, dtype=np.float32).reshape(6, 1, 1) * 10.0)
    y = {"school": tf.constant([0, 1, 2, 3, 4, 5], tf.int64)}
    w = {"school": tf.constant([1.0, 1.0, 0.0, 2.0, 1.0, 1.0])}  # example 2's label is unknown: weight 0
    mixed, mixed_y, mixed_w = (value for value in pipeline.mix_batch(x, y, w, alpha=0.4, seed=3))
    blend, again = mixed.numpy()[:6, 0, 0], mixed.numpy()[6:, 0, 0]
    np.testing.assert_array_equal(blend, again)  # one blend, two rows: its own targets, then its partner's
    own, partner = mixed_y["school"].numpy()[:6], mixed_y["school"].numpy()[6:]
    np.testing.assert_array_equal(own, np.arange(6))
    assert sorted(partner) == list(range(6))  # a permutation of the batch
    lam = (blend - 10.0 * partner) / (10.0 * (own - partner) + 1e-30)
    lam = np.where(own == partner, 0.5, lam)  # an example drawn as its own partner: any lambda
    weights = mixed_w["school"].numpy()
    base = w["school"].numpy()
    for i in range(6):
        if own[i] != partner[i]:
            np.testing.assert_allclose(weights[i], 2 * base[i] * lam[i], rtol=1e-4, atol=1e-5)
            np.testing.assert_allclose(weights[6 + i], 2 * base[partner[i]] * (1 - lam[i]), rtol=1e-4, atol=1e-5)
    assert weights[2] == 0.0 and weights[6 + int(np.flatnonzero(partner == 2)[0])] == 0.0  # unknown stays unknown
    assert np.all((lam >= 0) & (lam <= 1))
    assert pipeline.mix_batch(x, y, w, alpha=0.0) == (x, y, w)  # 0 = off: the batch as it came


def test_mixup_in_the_training_pipeline_doubles_the_rows_and_never_in_validation():
    source = synthetic_source(16, size=48, seed=4)
    mixing = Augment(mixup=0.4)
    images, y, w = next(iter(pipeline.make_dataset(source, labels.HEADS, 32, 8, training=True, augment=mixing)))
    assert images.shape == (16, 32, 32, 3) and all(y[head].shape == (16,) for head in labels.HEADS)
    cached = pipeline.make_dataset(source, labels.HEADS, 32, 8, training=True, augment=mixing, cache=True)
    assert next(iter(cached))[0].shape == (16, 32, 32, 3)
    plain = next(iter(pipeline.make_dataset(source, labels.HEADS, 32, 8, training=False, augment=mixing)))
    assert plain[0].shape == (8, 32, 32, 3)
    from artnet.training.feature_cache import FeatureSpec  # blending happens after the cache: its features are the same

    assert FeatureSpec(augment=mixing).to_dict() == FeatureSpec(augment=Augment()).to_dict()


def test_mixed_precision_keeps_heads_float32_and_a_step_is_finite():
    try:
        for policy in ("mixed_float16", "mixed_bfloat16"):
            keras.mixed_precision.set_global_policy(policy)
            model = ArtNet("tiny", image_size=32)
            model.compile(optimizer="adam", loss={h: "sparse_categorical_crossentropy" for h in model.heads})
            outputs = model(np.zeros((2, 32, 32, 3), np.float32))
            assert all(output.dtype == "float32" for output in outputs.values())
            assert model.get_layer("pooled").compute_dtype == policy.split("_")[1]
            x = np.random.default_rng(0).uniform(0, 255, (4, 32, 32, 3)).astype(np.float32)
            y = {h: np.zeros(4, np.int64) for h in model.heads}
            history = model.fit(x, y, epochs=1, verbose=0)
            assert np.isfinite(history.history["loss"][0])
    finally:
        keras.mixed_precision.set_global_policy("float32")


def test_backbone_errors_say_what_to_do(tmp_path):
    with pytest.raises(BackboneError, match="registered"):
        build_backbone("resnet9000")
    with pytest.raises(BackboneError, match="no ImageNet weights"):
        build_backbone("tiny", weights="imagenet")
    with pytest.raises(BackboneError, match="not found"):
        build_backbone("tiny", weights=str(tmp_path / "missing.weights.h5"))


def test_corrupt_model_file_is_a_clear_error(tmp_path):
    broken = tmp_path / "model.keras"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable ArtNet"):
        load_model(broken)
    with pytest.raises(FileNotFoundError, match="artnet train"):
        load_model(tmp_path / "nothing.keras")


def test_config_files_load_and_overrides_apply(tmp_path):
    path = tmp_path / "arm.py"
    path.write_text(
        textwrap.dedent(
            """
            from artnet.config import TrainConfig
            def get_config(variant=None):
                return TrainConfig(backbone="tiny", epochs=3 if variant == "cpu" else 30)
            """
        )
    )
    config = load_config(f"{path}:cpu")
    assert config.epochs == 3
    apply_overrides(config, ["epochs=5", "data.batch_size=4", "heads=school,type", "backbone_weights=null"])
    assert (config.epochs, config.data.batch_size, config.heads, config.backbone_weights) == (
        5,
        4,
        ("school", "type"),
        None,
    )
    assert from_dict(json.loads(json.dumps(config.to_dict()))) == config
    with pytest.raises(ValueError, match="unknown config field"):
        apply_overrides(config, ["epoch=5"])


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("dat.batch_size=4", "unknown config field 'dat.batch_size'"),
        ("data.augment.nope=1", "unknown config field"),
        ("epochs=ten", "takes int, not 'ten'"),
        ("epochs=2.5", "takes int"),
        ("learning_rate=fast", "takes float"),
        ("data.cache=1", "takes bool"),
        ("backbone=null", "takes str"),
        ("data.augment=1", "takes Augment"),
    ],
)
def test_bad_overrides_are_refused_with_the_field_and_its_type(override, message):
    with pytest.raises(ValueError, match=message):
        apply_overrides(tiny_config(), [override])


def test_overrides_convert_where_it_is_safe():
    config = apply_overrides(
        tiny_config(), ["learning_rate=1", "image_size=null", "data.augment.flip=false", "steps_per_epoch=3"]
    )
    assert config.learning_rate == 1.0 and isinstance(config.learning_rate, float)
    assert config.image_size is None and config.data.augment.flip is False and config.steps_per_epoch == 3


MIRRORED_SCRIPT = """
import tensorflow as tf
cpu = tf.config.list_physical_devices("CPU")[0]
tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
import json, sys
from artnet.data.synthetic import synthetic_source
from artnet.config import Augment
from artnet.config import TrainConfig, DataConfig
from artnet.training.train import train
config = TrainConfig(backbone="tiny", backbone_weights=None, image_size=32, optimizer="adam", learning_rate=0.01,
    fine_tune_learning_rate=0.01, schedule="constant", epochs=2, head_epochs=0, early_stopping_patience=0,
    strategy="mirrored", data=DataConfig(batch_size=8, augment=Augment(flip=False)))
sources = {s: synthetic_source(64, seed=i) for i, s in enumerate(("train", "validation", "test"))}
model = train(config, sys.argv[1], sources)
print(json.dumps(json.loads(open(sys.argv[1] + "/train_summary.json").read())))
"""


def test_mirrored_strategy_over_two_logical_cpus(tmp_path):
    script = tmp_path / "mirrored.py"
    script.write_text(MIRRORED_SCRIPT)
    done = subprocess.run(
        [sys.executable, str(script), str(tmp_path / "run")], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    summary = json.loads(done.stdout.strip().splitlines()[-1])
    assert summary["replicas"] == 2 and summary["global_batch"] == 16
    assert len((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()) == 2


class _KillAfter(keras.callbacks.Callback):
    """Stands in for a killed process: the run dies right after epoch `epochs` was logged and backed up."""

    def __init__(self, epochs: int):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise RuntimeError("killed")


def test_a_killed_run_resumes_where_it_stopped(synthetic, tmp_path):
    config = tiny_config(epochs=4)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, tmp_path, synthetic, callbacks=[_KillAfter(2)])
    assert not (tmp_path / "model.keras").exists()
    train(config, tmp_path, synthetic)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3, 4]  # resumed at 3, not restarted at 1
    assert (tmp_path / "model.keras").is_file()


def test_artnet_train_command_on_a_labelled_folder(tmp_path):
    from artnet import cli
    from artnet.data.synthetic import write_synthetic_folder

    folder = write_synthetic_folder(tmp_path / "paintings", 240)
    config = tmp_path / "arm.py"
    config.write_text(
        textwrap.dedent(
            f"""
            from artnet.config import DataConfig, TrainConfig
            from artnet.config import Augment
            def get_config(variant=None):
                return TrainConfig(backbone="tiny", backbone_weights=None, image_size=32, optimizer="adam",
                    learning_rate=0.01, fine_tune_learning_rate=0.01, epochs=2, head_epochs=0,
                    heads=("school", "type"),
                    data=DataConfig(source="folder", folder={str(folder)!r}, batch_size=16, augment=Augment()))
            """
        )
    )
    assert cli.main(["train", "--config", str(config), "--workdir", str(tmp_path / "run")]) == 0
    report = json.loads((tmp_path / "run" / "eval_test" / "report.json").read_text())
    assert set(report["heads"]) == {"school", "type"}
    assert (tmp_path / "run" / "export" / "saved_model" / "saved_model.pb").is_file()
    out = tmp_path / "again"
    assert (
        cli.main(
            [
                "evaluate",
                "--model",
                str(tmp_path / "run" / "model.keras"),
                "--folder",
                str(folder),
                "--split",
                "all",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    again = json.loads((out / "report.json").read_text())
    assert again["examples"] == 240 and again["majority_baseline_from"] == "the training split's label counts"
    # From the export folder alone (no label_counts.json beside it), the model card carries the counts.
    exported = tmp_path / "from-export"
    arguments = ["--model", str(tmp_path / "run" / "export" / "model.keras"), "--folder", str(folder)]
    assert cli.main(["evaluate", *arguments, "--split", "test", "--out", str(exported)]) == 0
    from_export = json.loads((exported / "report.json").read_text())
    assert from_export["majority_baseline_from"] == "the training split's label counts"
    assert from_export["heads"]["school"] == report["heads"]["school"]


def test_a_weights_download_that_cannot_happen_says_what_to_do(monkeypatch):
    from keras.src.utils import file_utils

    def offline(*args, **kwargs):
        raise Exception("URL fetch failure: [Errno -2] Name or service not known")

    monkeypatch.setattr(file_utils, "get_file", offline)
    with pytest.raises(BackboneError, match="efficientnet_lite0/lite2"):
        build_backbone("nasnet_mobile", weights="imagenet")


def test_a_resume_state_cut_short_falls_back_to_the_copy_before_it(synthetic, tmp_path):
    config = tiny_config(epochs=3)
    with pytest.raises(RuntimeError, match="killed"):
        train(config, tmp_path, synthetic, callbacks=[_KillAfter(2)])
    backup = tmp_path / "backup" / "fine_tune"
    assert (backup / "latest.weights.h5.bkp").is_file()  # two copies are kept
    (backup / "latest.weights.h5").write_bytes(b"cut short")  # the kill landed while epoch 2's copy was written
    train(config, tmp_path, synthetic)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 2, 3]  # epoch 2 redone from epoch 1's state, then on to the end


def test_an_unreadable_resume_state_with_no_copy_before_it_restarts_its_phase_with_a_warning(
    synthetic, tmp_path, capfd
):
    backup = tmp_path / "backup" / "fine_tune"
    backup.mkdir(parents=True)
    (backup / "latest.weights.h5").write_bytes(b"cut short")  # the first state of a run, cut short
    (backup / "training_metadata.json").write_text('{"epoch": 1, "bat')
    from artnet.training.records import check_backup

    assert check_backup(tmp_path / "backup" / "fine_tune") is False  # nothing there to resume from
    train(tiny_config(epochs=1), tmp_path, synthetic)  # no error and no one deleting files by hand
    assert check_backup(tmp_path / "backup" / "fine_tune") is True
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1]
    warnings = [line for line in capfd.readouterr().err.splitlines() if "warning" in line]
    assert warnings and all(line.startswith("artnet: warning: ") for line in warnings)
    assert "starts again from its first epoch" in warnings[-1]


class _KillMidEpoch(keras.callbacks.Callback):
    """Dies inside epoch `epoch` (1-based), after `batches` batches of it."""

    def __init__(self, epoch: int, batches: int):
        super().__init__()
        self.epoch, self.batches, self._current = epoch, batches, 0

    def on_epoch_begin(self, epoch, logs=None):
        self._current = epoch + 1

    def on_train_batch_end(self, batch, logs=None):
        if self._current == self.epoch and batch + 1 == self.batches:
            raise RuntimeError("killed mid-epoch")


def test_a_run_killed_mid_epoch_resumes_and_finishes(synthetic, tmp_path):
    config = tiny_config(epochs=3, backup_every_steps=5)
    with pytest.raises(RuntimeError, match="mid-epoch"):
        train(config, tmp_path, synthetic, callbacks=[_KillMidEpoch(epoch=2, batches=12)])
    train(config, tmp_path, synthetic)
    epochs = [json.loads(line)["epoch"] for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert epochs == [1, 2, 3]  # epoch 1 kept, the killed epoch 2 redone, then 3
    assert (tmp_path / "model.keras").is_file()


def test_a_labelled_folder_with_missing_files_keeps_each_label_with_its_image(tmp_path, capsys):
    from PIL import Image

    schools = ["Dutch", "Flemish", "French", "German", "Italian", "Spanish"]
    rows = ["file,school,author"]
    for i, school in enumerate(schools):
        rows.append(f"{school}.png,{school},painter {i}")
        if i % 2 == 0:  # every other listed file is absent
            continue
        Image.new("RGB", (8, 8), (40 * i, 0, 0)).save(tmp_path / f"{school}.png")
    (tmp_path / "labels.csv").write_text("\n".join(rows) + "\n")

    source = folder_source(tmp_path)

    assert "3 files listed" in capsys.readouterr().out
    assert len(source) == 3 and [row["file"] for row in source.meta] == ["Flemish.png", "German.png", "Spanish.png"]
    for image, school in zip(source.images, source.labels["school"], strict=True):
        red = int(tf.io.decode_png(image)[0, 0, 0])
        assert labels.SCHOOLS[school] == schools[red // 40]  # the label of this very image, not its neighbour's


def test_fine_tuning_and_style_layers_reach_inside_a_keras_application(tmp_path):
    """keras.applications backbones (the headline NASNetLarge is one) are built as one flat graph with the
    preprocessing: unfreeze and freeze_batchnorm reach their layers, and a style layer deep inside has its
    statistics in the model."""
    from artnet.models.artnet import STYLE
    from artnet.models.backbones import leaf_layers
    from artnet.training.compile import set_trainable

    model = ArtNet("efficientnetv2_b0", image_size=64, backbone_weights=None, style_layers=("block3b_add",))
    assert not any(isinstance(layer, keras.Model) for layer in model.backbone.layers)  # flat
    assert model.get_layer(STYLE).output.shape[-1] == 2 * model.backbone.get_layer("block3b_add").output.shape[-1]
    layers = leaf_layers(model.backbone)
    names = [layer.name for layer in layers]
    start = names.index("block6a_expand_conv")

    set_trainable(model, "fine_tune", tiny_config(unfreeze="block6a_expand_conv", freeze_batchnorm=True))

    assert not any(layer.trainable for layer in layers[:start])
    assert layers[start].trainable
    norms = [layer for layer in layers if isinstance(layer, keras.layers.BatchNormalization)]
    assert norms and not any(layer.trainable for layer in norms)
    trainable = {id(weight) for weight in model.backbone.trainable_weights}
    assert trainable and trainable <= {id(weight) for layer in layers[start:] for weight in layer.weights}
    with pytest.raises(ValueError, match="is not a layer of efficientnetv2_b0"):
        set_trainable(model, "fine_tune", tiny_config(unfreeze="no_such_layer"))


def test_best_keras_is_the_best_of_the_whole_run_not_of_each_phase(tmp_path):
    """Each phase (and each resumed process) makes a new ModelCheckpoint: it starts from the best logged loss."""
    from artnet.training.records import best_validation_loss, fit_callbacks

    log = tmp_path / "metrics.jsonl"
    log.write_text('{"epoch": 1, "val_loss": 0.9}\n{"epoch": 2, "val_loss": 0.7}\n{"epoch": 3, "val_lo')  # killed
    assert best_validation_loss(tmp_path) is None  # no best.keras yet: any epoch may write it
    ArtNet("tiny", image_size=32).save(str(tmp_path / "best.keras"))
    assert best_validation_loss(tmp_path) == 0.7
    checkpoint = next(
        c for c in fit_callbacks(tmp_path, "fine_tune", tiny_config()) if isinstance(c, keras.callbacks.ModelCheckpoint)
    )
    assert checkpoint.best == 0.7


def test_an_export_killed_halfway_leaves_the_previous_export_whole(tmp_path, monkeypatch):
    import artnet.serving.similar

    model = ArtNet("tiny", image_size=32)
    out = tmp_path / "export"
    export(model, out, card={"train_examples": 8}, index_source=synthetic_source(8))
    before = sorted(path.relative_to(out) for path in out.rglob("*"))

    def killed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(artnet.serving.similar, "build_index", killed)
    with pytest.raises(KeyboardInterrupt):
        export(model, out, card={"train_examples": 8}, index_source=synthetic_source(8))
    assert sorted(path.relative_to(out) for path in out.rglob("*")) == before  # untouched, index included
    monkeypatch.undo()
    assert export(model, out, index_source=synthetic_source(8)) == out and (out / "index").is_dir()
    assert sorted(path.name for path in tmp_path.iterdir()) == ["export"]  # no staging or previous copy left
