"""The layout's promises: rooms that import only what they should, one validation of heads, one serving path."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest
import tensorflow as tf

from artnet.config import TrainConfig, apply_overrides, from_dict


def _modules_after_import(statement: str) -> set[str]:
    code = f"import sys, json\n{statement}\nprint(json.dumps(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return set(json.loads(result.stdout.strip().splitlines()[-1]))


@pytest.mark.parametrize("module", ["artnet.config", "artnet.data.images", "artnet.labels", "artnet.workdir"])
def test_ground_floor_modules_import_without_tensorflow(module):
    loaded = _modules_after_import(f"import {module}")
    assert module in loaded
    assert not {name for name in loaded if name.split(".")[0] in ("tensorflow", "keras", "tensorflow_datasets")}


def test_serving_code_never_imports_the_training_pipeline_or_the_wga_source():
    loaded = _modules_after_import(
        "import artnet.serving.predictor, artnet.serving.batch_predict, artnet.serving.export, "
        "artnet.serving.explain, artnet.serving.similar, artnet.serving.demo, artnet.serving.launch"
    )
    assert "artnet.serving.predictor" in loaded and "artnet.serving.export" in loaded
    assert not {"artnet.data.pipeline", "artnet.data.sources"} & loaded
    assert not {name for name in loaded if name.startswith("artnet.data.wga")}


def test_a_misspelt_head_is_refused_with_its_likely_name():
    config = TrainConfig(backbone="tiny", backbone_weights=None)
    with pytest.raises(ValueError, match="unknown head 'tyep' \\(did you mean 'type'\\?\\)"):
        apply_overrides(config, ["heads=school,tyep"])
    with pytest.raises(ValueError, match="unknown head 'shcool'"):
        TrainConfig(heads=("shcool",))
    assert apply_overrides(TrainConfig(), ["heads=type,school"]).heads == ("school", "type")  # fixed order


def test_misspelt_loss_weight_keys_and_bad_smoothing_are_refused():
    with pytest.raises(ValueError, match="loss_weights: unknown head 'scool'"):
        TrainConfig(loss_weights={"scool": 2.0})
    with pytest.raises(ValueError, match="loss_weights: unknown head 'timefram'"):
        apply_overrides(TrainConfig(), ['loss_weights={"timefram": 1}'])
    with pytest.raises(ValueError, match="label_smoothing"):
        TrainConfig(label_smoothing=1.5)
    with pytest.raises(ValueError, match="unknown head"):
        from_dict({**TrainConfig().to_dict(), "heads": ["school", "style"]})


def test_label_smoothing_changes_the_loss_as_the_formula_says():
    from artnet.models.losses import SmoothedSparseCrossentropy, head_loss

    probabilities = np.array([[0.7, 0.2, 0.1], [0.1, 0.1, 0.8]], np.float32)
    y = np.array([0, 2])
    weights = np.array([1.0, 0.0], np.float32)  # a masked (unknown) label adds nothing
    plain = keras.losses.SparseCategoricalCrossentropy()(y, probabilities, sample_weight=weights)
    unsmoothed = SmoothedSparseCrossentropy(3, 0.0)(y, probabilities, sample_weight=weights)
    np.testing.assert_allclose(float(unsmoothed), float(plain), rtol=1e-5)
    smoothed = SmoothedSparseCrossentropy(3, 0.3)(y, probabilities, sample_weight=weights)
    # Targets (1 - 0.3) one-hot + 0.3 / 3 uniform: -(0.8 log 0.7 + 0.1 log 0.2 + 0.1 log 0.1), averaged over 2.
    expected = -(0.8 * np.log(0.7) + 0.1 * np.log(0.2) + 0.1 * np.log(0.1)) / 2
    np.testing.assert_allclose(float(smoothed), expected, rtol=1e-4)
    assert isinstance(head_loss("school", 6, 0.0), keras.losses.SparseCategoricalCrossentropy)
    assert isinstance(head_loss("school", 6, 0.1), SmoothedSparseCrossentropy)


def test_label_smoothing_is_used_by_training(tmp_path):
    """The config value reaches the compiled loss (it used to be accepted and ignored)."""
    from artnet.models.artnet import ArtNet
    from artnet.models.losses import SmoothedSparseCrossentropy
    from artnet.training.compile import compile_model

    model = ArtNet("tiny", heads=("school",), image_size=32)
    compile_model(model, TrainConfig(backbone="tiny", heads=("school",), label_smoothing=0.2), 1e-3, 10)
    loss = model.loss["school"]
    assert isinstance(loss, SmoothedSparseCrossentropy) and loss.label_smoothing == 0.2


def test_the_predictor_and_the_saved_model_serve_through_one_function(tmp_path):
    from artnet.models.artnet import ArtNet
    from artnet.serving.export import export
    from artnet.serving.predictor import Predictor

    keras.utils.set_random_seed(3)
    model = ArtNet("tiny", image_size=32)
    images = np.random.default_rng(0).integers(0, 256, (2, 45, 60, 3), dtype=np.uint8)
    out = export(model, tmp_path / "export")
    served = tf.saved_model.load(str(out / "saved_model")).signatures["serving_default"](images=tf.constant(images))
    direct = model.serving_function()(tf.constant(images))
    predictor = Predictor(model)
    predicted = [predictor.predict(image, top_k=1) for image in images]
    for head in model.heads:
        np.testing.assert_allclose(served[head].numpy(), direct[head].numpy(), atol=1e-6)
        best = direct[head].numpy().argmax(axis=1)
        assert [p[head][0][1] for p in predicted] == pytest.approx(direct[head].numpy().max(axis=1), abs=1e-6)
        assert [p[head][0][0] for p in predicted] == [model_label(head, i) for i in best]


def model_label(head: str, index: int) -> str:
    from artnet import labels

    return labels.VOCABULARIES[head][index]


def test_workdir_names_every_file_that_training_writes(tmp_path):
    """Every file a run leaves at the top of its workdir is one the Workdir object names."""
    from artnet.config import Augment, DataConfig
    from artnet.data.synthetic import write_synthetic_folder
    from artnet.run import run_experiment
    from artnet.workdir import Workdir

    folder = write_synthetic_folder(tmp_path / "paintings", 120)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=None,
        image_size=32,
        heads=("school",),
        epochs=1,
        head_epochs=0,
        early_stopping_patience=0,
        data=DataConfig(source="folder", folder=str(folder), batch_size=32, augment=Augment(flip=False)),
    )
    result = run_experiment(config, tmp_path / "run")
    files = Workdir(tmp_path / "run")
    assert files.finished() and result.export_dir == files.export.root
    named = {
        files.config,
        files.label_counts,
        files.train_summary,
        files.metrics_csv,
        files.metrics_jsonl,
        files.tensorboard,
        files.root / "backup",
        files.phase_done("fine_tune"),
        files.best_model,
        files.model,
        files.test_evaluation.root,
        files.validation_evaluation.root,
        files.export.root,
    }
    assert set(files.root.iterdir()) <= named
    assert json.loads(files.export.card.read_text())["train_examples"] == result.card["train_examples"]
    assert files.test_evaluation.exists() and files.export.index.embeddings.is_file()


def test_config_recipes_need_no_sys_path_edits(tmp_path):
    """A recipe package of the user's own, importing a sibling relatively, loads by path."""
    from artnet.config import load_config

    package = tmp_path / "myconfigs"
    package.mkdir()
    (package / "__init__.py").write_text("")
    (package / "base.py").write_text("LEARNING_RATE = 0.123\n")
    (package / "mine.py").write_text(
        textwrap.dedent(
            """
            from artnet.config import ARMS, TrainConfig, parse_arm
            from .base import LEARNING_RATE
            def get_config(arg=None):
                arm, _ = parse_arm(arg)
                return TrainConfig(heads=ARMS[arm], learning_rate=LEARNING_RATE)
            """
        )
    )
    before = list(sys.path)
    config = load_config(f"{package / 'mine.py'}:single_type")
    assert (config.heads, config.learning_rate, sys.path) == (("type",), 0.123, before)


def test_the_ordinal_timeframe_loss_costs_a_near_miss_less_than_a_blunder():
    from artnet.models.losses import OrdinalSoftCrossentropy, head_loss, ordinal_targets

    table = ordinal_targets(10, 1.0)
    np.testing.assert_allclose(table.sum(axis=1), 1.0, rtol=1e-6)
    assert table[4].argmax() == 4 and table[4, 3] == pytest.approx(table[4, 5]) and table[4, 3] > table[4, 1]
    loss = OrdinalSoftCrossentropy(10)
    true = np.array([5])

    def confident(block):
        p = np.full((1, 10), 0.01, np.float32)
        p[0, block] = 0.91
        return p

    near, blunder = float(loss(true, confident(6))), float(loss(true, confident(0)))
    plain = keras.losses.SparseCategoricalCrossentropy()
    assert near < blunder  # ordinal: a neighbouring block is a smaller error
    assert float(plain(true, confident(6))) == pytest.approx(float(plain(true, confident(0))))  # plain: alike
    masked = float(loss(true, confident(0), sample_weight=np.array([0.0])))
    assert masked == 0.0
    assert isinstance(head_loss("timeframe", 10, timeframe_loss="ordinal"), OrdinalSoftCrossentropy)
    assert not isinstance(head_loss("school", 6, timeframe_loss="ordinal"), OrdinalSoftCrossentropy)
    with pytest.raises(ValueError, match="timeframe_loss"):
        TrainConfig(timeframe_loss="corn")
