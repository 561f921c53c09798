"""The recipe's machinery: group-stratified folder splits, extra folders, the feature cache, the linear probe and
heads trained on cached features (tiny backbone, synthetic data: fast)."""

from __future__ import annotations

import csv
import dataclasses
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from artnet import labels
from artnet.config import Augment, DataConfig, TrainConfig
from artnet.data.sources import SPLITS, folder_source, load_sources, stratified_group_splits
from artnet.data.synthetic import write_synthetic_folder
from artnet.testing.configs import tiny_cached_config
from artnet.training.feature_cache import FeatureSpec, cache_key, cached_features, compute_features

ROOT = Path(__file__).resolve().parents[1]
WIKIART = ROOT.parent / "shared" / "wikiart-sample"


def _tiny_cached_config(tmp_path, tiny_weights, monkeypatch, images: int, authors: int, data=None, **fields):
    """A tiny-backbone config on a synthetic folder, trained from a feature cache kept in `tmp_path`."""
    monkeypatch.setenv("ARTNET_FEATURE_CACHE", str(tmp_path / "cache"))
    folder = write_synthetic_folder(tmp_path / "paintings", images, authors=authors)
    return tiny_cached_config(folder, tiny_weights, data, **fields)


def _groups_and_labels(n_groups: int, seed: int = 0):
    """Painters with 1-6 works each; a rare school held by exactly 3 painters."""
    rng = np.random.default_rng(seed)
    groups, school, timeframe = [], [], []
    for number in range(n_groups):
        works = int(rng.integers(1, 7))
        groups += [f"painter {number}"] * works
        school += [3 if number < 3 else int(rng.choice([0, 1, 2, 4]))] * works  # German (3) for 3 painters only
        timeframe += list(rng.integers(0, 10, works))
    head_labels = {
        "school": np.asarray(school),
        "timeframe": np.asarray(timeframe),
        "type": np.full(len(groups), labels.UNKNOWN),
    }
    return groups, head_labels


@pytest.mark.parametrize("seed", range(5))
def test_stratified_splits_give_every_class_of_three_painters_training_painters(seed):
    groups, head_labels = _groups_and_labels(40, seed)
    assignment = stratified_group_splits(groups, head_labels, salt=f"test-{seed}")
    assert set(assignment) == set(groups) and set(assignment.values()) <= set(SPLITS)
    for head, values in head_labels.items():
        for value in set(values[values >= 0].tolist()):
            holders = {g for g, v in zip(groups, values, strict=True) if v == value}
            if len(holders) >= 3:
                assert any(assignment[g] == "train" for g in holders), (head, value)
    painters = {split: [g for g, s in assignment.items() if s == split] for split in SPLITS}
    assert 0.55 < len(painters["train"]) / 40 < 0.85 and painters["validation"] and painters["test"]
    assert stratified_group_splits(groups, head_labels, salt=f"test-{seed}") == assignment  # deterministic


def test_folder_splits_keep_each_painter_on_one_side_and_cover_the_folder(tmp_path):
    folder = write_synthetic_folder(tmp_path / "paintings", 150, authors=30)
    parts = {split: folder_source(folder, split=split) for split in SPLITS}
    authors = {split: {item["author"] for item in part.meta} for split, part in parts.items()}
    assert sum(len(part) for part in parts.values()) == 150
    assert not (authors["train"] & authors["validation"] or authors["train"] & authors["test"])
    hashed = {split: folder_source(folder, split=split, stratify=False) for split in SPLITS}
    assert sum(len(part) for part in hashed.values()) == 150


@pytest.mark.skipif(not (WIKIART / "labels.csv").is_file(), reason="needs ../shared/wikiart-sample")
def test_the_real_wikiart_sample_trains_every_school():
    """The painter-hash split left German (3 painters) with 0 training images; the stratified one does not."""
    train = folder_source(WIKIART, split="train")
    assert all((train.labels["school"] == index).any() for index in range(len(labels.SCHOOLS)))


def test_extra_folders_join_each_split_with_their_labels(tmp_path):
    main = write_synthetic_folder(tmp_path / "main", 90, authors=18, seed=1)
    extra = write_synthetic_folder(tmp_path / "extra", 60, authors=12, seed=2)
    rows = list(csv.DictReader((extra / "labels.csv").open()))
    for row in rows:  # the extra collection knows no types: masked there, not dropped
        row["type"] = ""
    with (extra / "labels.csv").open("w", newline="") as out:
        writer = csv.DictWriter(out, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    config = TrainConfig(data=DataConfig(source="folder", folder=str(main), extra_folders=(str(extra),)))
    combined = load_sources(config)
    for split in SPLITS:
        alone = folder_source(main, split=split)
        other = folder_source(extra, split=split)
        assert len(combined[split]) == len(alone) + len(other)
        np.testing.assert_array_equal(combined[split].labels["school"][: len(alone)], alone.labels["school"])
        assert (combined[split].labels["type"][len(alone) :] == labels.UNKNOWN).all()
        assert len(combined[split].meta) == len(combined[split])
    assert sum(1 for _ in combined["train"].images) == len(combined["train"])


def test_the_feature_cache_computes_once_and_never_serves_stale_features(tmp_path, tiny_weights, monkeypatch):
    from artnet.data.synthetic import synthetic_source
    from artnet.training import feature_cache as features

    source = synthetic_source(24, size=32, seed=0)
    spec = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, views=3, batch_size=8)
    first = cached_features(source, spec, tmp_path / "cache")
    assert first.shape == (3, 24, 32) and first.dtype == np.float16

    def no_recompute(*args, **kwargs):
        raise AssertionError("the cache should have answered")

    monkeypatch.setattr(features, "compute_layers", no_recompute)
    np.testing.assert_array_equal(cached_features(source, spec, tmp_path / "cache"), first)
    monkeypatch.undo()
    # Other images, another layer, other weights: each is a new key, computed afresh.
    other_images = synthetic_source(24, size=32, seed=1)
    assert not np.array_equal(cached_features(other_images, spec, tmp_path / "cache")[0], first[0])
    layer_spec = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, layer="preprocess", batch_size=8)
    assert cached_features(source, layer_spec, tmp_path / "cache").shape == (1, 24, 32, 32, 3)
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 3


def test_layers_missing_from_the_cache_come_from_one_backbone_pass(tmp_path, tiny_weights, monkeypatch):
    """The pooled features and style statistics of one model: one pass per view computes both, and each is
    stored under its own key (what a later single-layer request reads)."""
    from artnet.data.synthetic import synthetic_source
    from artnet.training import feature_cache as features
    from artnet.training.feature_cache import cached_layers, style_layer_spec

    source = synthetic_source(16, size=32, seed=0)
    pooled = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, views=2, batch_size=8)
    style = dataclasses.replace(pooled, layer=style_layer_spec(["tiny_bn1"]))
    passes = []
    compute_layers = features.compute_layers

    def counted(source, spec, layers):
        passes.append(list(layers))
        return compute_layers(source, spec, layers)

    monkeypatch.setattr(features, "compute_layers", counted)
    both = cached_layers(source, [pooled, style], tmp_path / "cache")
    assert passes == [["pooled", "style:tiny_bn1"]]
    assert both[0].shape[:2] == both[1].shape[:2] == (2, 16)
    alone = features.compute_features(source, style)
    np.testing.assert_allclose(both[1].astype(np.float32), alone.astype(np.float32), atol=1e-2)
    np.testing.assert_array_equal(cached_features(source, pooled, tmp_path / "cache"), both[0])
    assert passes == [["pooled", "style:tiny_bn1"], ["style:tiny_bn1"]]  # compute_features; the cache answered


def test_a_subset_takes_its_rows_of_the_whole_sources_cached_features(tmp_path, tiny_weights, monkeypatch):
    """The grid's nested training fractions: extracted once for the whole training split, indexed per subset."""
    from artnet.data.sources import subset
    from artnet.data.synthetic import synthetic_source
    from artnet.training import feature_cache as features

    source = synthetic_source(24, size=32, seed=0)
    spec = FeatureSpec(backbone="tiny", weights=tiny_weights, image_size=32, views=2, batch_size=8)
    whole = cached_features(source, spec, tmp_path / "cache")
    keep = np.arange(24) % 3 != 0
    half = subset(source, keep, "two thirds")
    inner_keep = np.arange(int(keep.sum())) % 2 == 0
    quarter = subset(half, inner_keep, "a third")

    def no_recompute(*args, **kwargs):
        raise AssertionError("a subset of a cached source should extract nothing")

    monkeypatch.setattr(features, "compute_layers", no_recompute)
    np.testing.assert_array_equal(cached_features(half, spec, tmp_path / "cache"), whole[:, keep])
    np.testing.assert_array_equal(cached_features(quarter, spec, tmp_path / "cache"), whole[:, keep][:, inner_keep])
    monkeypatch.undo()
    # and the indexed rows are the features of the subset's own images (the same as extracting it afresh)
    fresh = features.compute_features(dataclasses.replace(quarter, origin=None), spec)
    np.testing.assert_allclose(fresh.astype(np.float32), whole[:, keep][:, inner_keep].astype(np.float32), atol=1e-2)


def _noise_source(n: int, size: int = 32):
    import io

    from PIL import Image

    from artnet.data.sources import Source

    rng = np.random.default_rng(7)
    encoded = []
    for _ in range(n):
        buffer = io.BytesIO()
        Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(buffer, format="PNG")
        encoded.append(buffer.getvalue())
    images = tf.data.Dataset.from_tensor_slices(tf.constant(encoded))
    return Source("noise", images, {head: np.zeros(n, np.int64) for head in labels.HEADS})


def test_feature_views_are_plain_mirrored_and_augmented(tiny_weights):
    """Read at the backbone's first layer (the pixels / 255), the views are exactly what they claim to be."""
    source = _noise_source(8)
    spec = FeatureSpec("tiny", tiny_weights, 32, layer="preprocess", views=3, augment=Augment(), batch_size=8)
    stored = compute_features(source, spec)
    views = stored.astype(np.float32) * 255
    pixels = np.stack([tf.io.decode_png(encoded).numpy() for encoded in source.images]).astype(np.float32)
    np.testing.assert_allclose(views[0], pixels, atol=0.6)  # float16 storage
    np.testing.assert_allclose(views[1], pixels[:, :, ::-1], atol=0.6)
    assert np.abs(views[2] - pixels).mean() > 20  # a warp of noise is other noise
    np.testing.assert_array_equal(compute_features(source, spec)[2], stored[2])  # seeded: the same warp again
    # RandAugment on top of the warp: another view (and another cache key), repeatable all the same.
    randaugmented = dataclasses.replace(spec, augment=Augment(randaugment=True))
    assert cache_key(randaugmented, "data") != cache_key(spec, "data")
    with_randaugment = compute_features(source, randaugmented)
    np.testing.assert_array_equal(with_randaugment[:2], stored[:2])  # the plain and mirrored views are untouched
    assert np.abs(with_randaugment[2].astype(np.float32) - stored[2].astype(np.float32)).mean() > 0.02
    np.testing.assert_array_equal(compute_features(source, randaugmented)[2], with_randaugment[2])


def test_the_probe_chooses_on_validation_and_learns_a_separable_task():
    from artnet.training.probe import C_GRID, choose_and_fit, full_probabilities

    rng = np.random.default_rng(0)
    centres = rng.normal(0, 3, (4, 16))

    def sample(n):
        y = rng.integers(0, 4, n)
        return centres[y] + rng.normal(0, 1, (n, 16)), y

    (train_x, train_y), (val_x, val_y), (test_x, test_y) = sample(300), sample(100), sample(200)
    train_y[:20] = labels.UNKNOWN  # unknown labels are left out of the fit
    model, choice = choose_and_fit("school", train_x, train_y, val_x, val_y)
    assert choice.C in C_GRID and len(choice.grid) == 2 * len(C_GRID)
    assert choice.validation_balanced_accuracy == max(row["balanced_accuracy"] for row in choice.grid)
    probabilities = full_probabilities(model, test_x, len(labels.SCHOOLS))
    assert probabilities.shape == (200, 6) and np.allclose(probabilities.sum(axis=1), 1)
    assert (probabilities.argmax(axis=1) == test_y).mean() > 0.9


def test_the_warm_started_path_along_c_reaches_the_cold_fits():
    """The probe's grid fits each C from the previous solution: the same optimum as fitting it from zero."""
    from artnet.training.probe import _fit, _fit_along_c

    rng = np.random.default_rng(1)
    y = rng.integers(0, 5, 400)
    x = rng.normal(0, 1, (400, 40)) + rng.normal(0, 0.7, (5, 40))[y]  # overlapping classes: C matters
    grid = (0.3, 0.001, 0.03)  # out of order: the path sorts it
    path = list(_fit_along_c(x, y, grid, "balanced"))
    assert [C for C, _ in path] == sorted(grid)
    for C, model in path:
        cold = _fit(x, y, C, "balanced")
        assert model[-1].C == C
        np.testing.assert_allclose(model.predict_proba(x), cold.predict_proba(x), atol=2e-3)
    spread = [model.predict_proba(x).max(axis=1).mean() for _, model in path]
    assert spread[0] < spread[-1] - 0.05  # each yielded model is its own fit, not one shared estimator


def _compare_module():
    spec = importlib.util.spec_from_file_location("compare", ROOT / "experiments" / "compare.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("style_layers", [(), ("tiny_bn1",)])
def test_the_probe_arm_writes_an_evaluation_the_runner_tabulates(tmp_path, tiny_weights, style_layers):
    """With the config's style layers, the probe sees what that model's heads see: pooled + style statistics."""
    import json

    from artnet.training.probe import run_probe

    folder = write_synthetic_folder(tmp_path / "paintings", 160, authors=32)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=tiny_weights,
        image_size=32,
        style_layers=style_layers,
        data=DataConfig(source="folder", folder=str(folder)),
    )
    report = run_probe(config, tmp_path / "probe", load_sources(config), cache_dir=tmp_path / "cache")
    assert set(report["heads"]) == set(labels.HEADS)
    cached_layers = {json.loads(path.read_text())["spec"]["layer"] for path in (tmp_path / "cache").glob("*.json")}
    if style_layers:
        assert cached_layers == {"pooled", "style:tiny_bn1"}
        assert "style statistics of tiny_bn1" in report["model"]
    else:
        assert cached_layers == {"pooled"} and "style" not in report["model"]
    rows = _compare_module().rows_for_run("probe", tmp_path / "probe")
    assert {row["head"] for row in rows} == set(labels.HEADS)
    for row in rows:
        assert row["top1"] == report["heads"][row["head"]]["top1"]
        assert row["majority_baseline"] == report["heads"][row["head"]]["majority_baseline"]


def test_heads_trained_on_cached_features_are_the_models_heads(tmp_path, tiny_weights, monkeypatch):
    """Heads-only training from the cache gives an ArtNet whose image predictions match the feature-trained heads,
    and it learns: the synthetic task is well above chance."""
    from artnet.training.feature_cache import FeatureSpec, cached_features
    from artnet.training.train import train

    monkeypatch.setenv("ARTNET_FEATURE_CACHE", str(tmp_path / "cache"))
    folder = write_synthetic_folder(tmp_path / "paintings", 240, authors=40)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=tiny_weights,
        image_size=32,
        heads=("school", "type"),
        optimizer="adam",
        learning_rate=0.01,
        epochs=30,
        head_epochs=30,
        early_stopping_patience=0,
        dropout=0.0,
        data=DataConfig(source="folder", folder=str(folder), batch_size=32, feature_views=2, augment=Augment()),
    )
    sources = load_sources(config)
    model = train(config, tmp_path / "run", sources)
    assert (tmp_path / "run" / "model.keras").is_file()
    test = sources["test"]
    features = cached_features(test, FeatureSpec("tiny", tiny_weights, 32, views=1))[0].astype(np.float32)
    from artnet.data.preprocessing import decode_and_resize

    pixels = np.stack([decode_and_resize(encoded, 32).numpy() for encoded in test.images]).astype(np.float32)
    through_images = model(pixels, training=False)
    for head in model.heads:
        from_features = tf.nn.softmax(
            features @ model.get_layer(head).kernel.numpy() + model.get_layer(head).bias.numpy()
        ).numpy()
        np.testing.assert_allclose(through_images[head].numpy(), from_features, atol=2e-2)
        known = test.labels[head] >= 0
        accuracy = (through_images[head].numpy().argmax(axis=1)[known] == test.labels[head][known]).mean()
        assert accuracy > 2.0 / len(labels.VOCABULARIES[head]), head


def test_data_stats_of_a_folder_shows_painters_per_class_and_split(tmp_path, capsys):
    from artnet import cli

    folder = write_synthetic_folder(tmp_path / "paintings", 120, authors=24)
    assert cli.main(["data-stats", "--folder", str(folder), "--out", str(tmp_path / "stats")]) == 0
    stats = __import__("json").loads((tmp_path / "stats" / "statistics.json").read_text())
    train = folder_source(folder, split="train")
    italian = labels.SCHOOLS.index("Italian")
    painters = {
        item["author"] for item, school in zip(train.meta, train.labels["school"], strict=True) if school == italian
    }
    assert stats["painters"]["school"]["Italian"]["train"] == len(painters)
    assert stats["authors_shared_between_splits"] == 0
    assert "painters train" in capsys.readouterr().out


def test_data_stats_of_a_training_config_counts_the_folder_it_trains_on(tmp_path, capsys):
    from artnet import cli

    folder = write_synthetic_folder(tmp_path / "paintings", 60, authors=12)
    recipe = tmp_path / "recipe.py"
    recipe.write_text(
        "from artnet.config import DataConfig, TrainConfig\n"
        "def get_config(arg):\n"
        f"    return TrainConfig(backbone='tiny', data=DataConfig(source='folder', folder={str(folder)!r}))\n"
    )
    assert cli.main(["data-stats", "--config", f"{recipe}:x", "--out", str(tmp_path / "stats")]) == 0
    stats = __import__("json").loads((tmp_path / "stats" / "statistics.json").read_text())
    assert stats["folder"] == str(folder) and stats["authors_shared_between_splits"] == 0
    assert f"{folder} (split by author)" in capsys.readouterr().out


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_fine_tuning_from_the_cache_trains_only_the_unfrozen_tail(tmp_path, tiny_weights, monkeypatch, mixup):
    """unfreeze=tiny_conv2: the cache holds tiny_bn1's output; the front keeps its weights, the tail learns."""
    import json

    from artnet.training.compile import cut_layer
    from artnet.training.train import train

    monkeypatch.setenv("ARTNET_FEATURE_CACHE", str(tmp_path / "cache"))
    folder = write_synthetic_folder(tmp_path / "paintings", 200, authors=40)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=tiny_weights,
        image_size=32,
        heads=("school",),
        optimizer="adam",
        learning_rate=0.01,
        fine_tune_learning_rate=0.01,
        epochs=6,
        head_epochs=3,
        unfreeze="tiny_conv2",
        early_stopping_patience=0,
        data=DataConfig(
            source="folder", folder=str(folder), batch_size=32, feature_views=2, augment=Augment(mixup=mixup)
        ),
    )
    from artnet.models.backbones import build_backbone

    reference = build_backbone("tiny", weights=tiny_weights, image_size=32)
    assert cut_layer(reference, "tiny_conv2") == "tiny_bn1"
    model = train(config, tmp_path / "run", load_sources(config))
    for name in ("tiny_conv1", "tiny_bn1"):  # the cached front: untouched
        for trained, original in zip(
            model.backbone.get_layer(name).get_weights(), reference.get_layer(name).get_weights(), strict=True
        ):
            np.testing.assert_array_equal(trained, original)
    changed = [
        not np.allclose(trained, original)
        for trained, original in zip(
            model.backbone.get_layer("tiny_conv2").get_weights(),
            reference.get_layer("tiny_conv2").get_weights(),
            strict=True,
        )
    ]
    assert any(changed)
    phases = [json.loads(line)["phase"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["heads"] * 3 + ["fine_tune"] * 3
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 4  # pooled + tiny_bn1, train + validation


@pytest.mark.parametrize("strategy", ["uncertainty", "dwa", "pcgrad"])
def test_each_loss_weighting_trains_through_train_and_logs_its_weights(tmp_path, strategy):
    """The config's loss_weighting reaches training (images, fine-tuning phase) and its weights are logged."""
    import json

    from artnet.training.train import train

    folder = write_synthetic_folder(tmp_path / "paintings", 96, authors=24)
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=None,
        image_size=32,
        optimizer="adam",
        epochs=3,
        head_epochs=0,
        early_stopping_patience=0,
        loss_weighting=strategy,
        data=DataConfig(source="folder", folder=str(folder), batch_size=32, augment=Augment(flip=False)),
    )
    model = train(config, tmp_path / "run", load_sources(config))
    assert type(model).__name__ == "ArtNet" and (tmp_path / "run" / "model.keras").is_file()
    records = [json.loads(line) for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert len(records) == 3 and all(np.isfinite(r["loss"]) for r in records)
    for head in labels.HEADS:
        assert all(f"weight_{head}" in record for record in records), records[0].keys()
    if strategy == "dwa":  # equal weights for two epochs, then the loss ratios decide
        assert [records[0][f"weight_{h}"] for h in labels.HEADS] == pytest.approx([1, 1, 1])


def test_an_unknown_loss_weighting_is_refused_with_its_likely_name():
    with pytest.raises(ValueError, match="unknown loss_weighting 'pcgard' \\(did you mean 'pcgrad'\\?\\)"):
        TrainConfig(loss_weighting="pcgard")


def test_heads_from_the_probe_is_refused_where_it_would_be_ignored_or_misread():
    with pytest.raises(ValueError, match="heads_from must be 'epochs' or 'probe'"):
        TrainConfig(heads_from="probes")
    with pytest.raises(ValueError, match="pretrained network's features: set backbone_weights"):
        TrainConfig(heads_from="probe", backbone_weights=None)
    with pytest.raises(ValueError, match="class heads only"):
        TrainConfig(heads_from="probe", year_head=True, data=DataConfig(feature_views=2))


def test_training_fractions_of_painters_are_nested_and_keep_images_with_their_labels(tmp_path):
    from artnet.data.sources import painter_fraction

    folder = write_synthetic_folder(tmp_path / "paintings", 200, authors=40)
    train = folder_source(folder, split="train")
    parts = {fraction: painter_fraction(train, fraction) for fraction in (0.1, 0.25, 0.5, 1.0)}
    painters = {fraction: {item["author"] for item in part.meta} for fraction, part in parts.items()}
    assert painters[0.1] <= painters[0.25] <= painters[0.5] <= painters[1.0]
    assert len(parts[0.1]) < len(parts[0.5]) < len(parts[1.0]) == len(train)
    # Images stay with their labels: the subset's i-th image is the original's image of the same file.
    files = [item["file"] for item in train.meta]
    originals = dict(zip(files, list(train.images.as_numpy_iterator()), strict=True))
    half = parts[0.5]
    for item, encoded in zip(half.meta, half.images.as_numpy_iterator(), strict=True):
        assert encoded == originals[item["file"]]
    with pytest.raises(ValueError, match="train_fraction"):
        painter_fraction(train, 0.0)


@pytest.mark.parametrize("mixup", [0.0, 0.4])
def test_style_statistics_train_from_the_cache_and_are_the_models_own(tmp_path, tiny_weights, monkeypatch, mixup):
    """style_layers=tiny_bn1 with unfreeze=tiny_conv2: the heads see the pooled features and tiny_bn1's
    per-channel mean and std; both phases train from the cache (pooled, tiny_bn1 and its statistics); the saved
    model gives the same predictions, and Grad-CAM runs through the same layers."""
    import json

    import keras

    from artnet.data.preprocessing import decode_and_resize
    from artnet.models.artnet import STYLE
    from artnet.serving.explain import GradCam
    from artnet.training.feature_cache import style_layer_spec
    from artnet.training.train import train

    config = _tiny_cached_config(
        tmp_path,
        tiny_weights,
        monkeypatch,
        200,
        40,
        data={"augment": Augment(mixup=mixup)},
        heads=("school", "type"),
        optimizer="adam",
        learning_rate=0.01,
        fine_tune_learning_rate=0.01,
        epochs=6,
        head_epochs=3,
        unfreeze="tiny_conv2",
        style_layers=("tiny_bn1",),
        early_stopping_patience=0,
    )
    sources = load_sources(config)
    model = train(config, tmp_path / "run", sources)
    phases = [json.loads(line)["phase"] for line in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert phases == ["heads"] * 3 + ["fine_tune"] * 3
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 6  # pooled, tiny_bn1, its statistics: train + val

    test = sources["test"]
    pixels = np.stack([decode_and_resize(encoded, 32).numpy() for encoded in test.images]).astype(np.float32)
    cached = cached_features(test, FeatureSpec("tiny", tiny_weights, 32, layer=style_layer_spec(["tiny_bn1"])))[0]
    taps = keras.Model(model.input, model.get_layer(STYLE).output)
    np.testing.assert_allclose(taps(pixels).numpy(), cached.astype(np.float32), rtol=2e-2, atol=2e-2)
    channels = model.backbone.get_layer("tiny_bn1").output.shape[-1]
    assert cached.shape == (len(test), 2 * channels)  # a mean and a standard deviation per channel

    reloaded = keras.saving.load_model(tmp_path / "run" / "model.keras")
    assert reloaded.style_layers == ("tiny_bn1",)
    for head in model.heads:
        np.testing.assert_allclose(reloaded(pixels)[head].numpy(), model(pixels)[head].numpy(), atol=1e-5)
    heatmap = GradCam(reloaded).heatmap(pixels[0], "school")
    assert heatmap.shape == (32, 32) and np.isfinite(heatmap).all()


def test_style_layers_in_the_unfrozen_part_are_refused_when_training_from_the_cache(
    tmp_path, tiny_weights, monkeypatch
):
    """Refused before the heads phase trains: nothing is extracted, and the message says what to do."""
    from artnet.training.train import train

    config = _tiny_cached_config(
        tmp_path,
        tiny_weights,
        monkeypatch,
        80,
        16,
        data={"feature_views": 1},
        heads=("school",),
        epochs=2,
        head_epochs=1,
        unfreeze="tiny_conv2",
        style_layers=("tiny_bn2",),
    )
    with pytest.raises(ValueError, match=r"tiny_bn2.*unfrozen part.*feature_views=0"):
        train(config, tmp_path / "run", load_sources(config))
    assert not (tmp_path / "cache").exists()
    with pytest.raises(ValueError, match="not layers of tiny"):
        from artnet.models.artnet import ArtNet

        ArtNet(backbone="tiny", heads=("school",), image_size=32, style_layers=("no_such_layer",))


def validation_score(network, sources, heads) -> float:
    """A returned model's own mean validation balanced accuracy, from the validation images."""
    from sklearn.metrics import balanced_accuracy_score

    from artnet.data.preprocessing import decode_and_resize

    validation = sources["validation"]
    images = np.stack([decode_and_resize(encoded, 32).numpy() for encoded in validation.images])
    said = network.predict(images.astype(np.float32), verbose=0)
    scores = []
    for head in heads:
        known = validation.labels[head] >= 0
        scores.append(balanced_accuracy_score(validation.labels[head][known], said[head][known].argmax(axis=1)))
    return float(np.mean(scores))


def fine_tuning_is_kept_over_a_useless_probe(config, sources, tmp_path, monkeypatch) -> None:
    """Train `config` from a probe that writes useless heads (all logits 0: one class for every image, chance
    balanced accuracy): fine-tuning clearly beats it and must be kept, and the model returned is the fine-tuned
    one (its own validation score is the recorded end score)."""
    import json

    import artnet.training.lpft
    from artnet.training.probe import probe_into_heads as real_probe  # the real one, whatever a test patched
    from artnet.training.train import train

    def useless_probe(network, *args, **kwargs):
        choices = real_probe(network, *args, **kwargs)
        for head in network.heads:
            network.get_layer(head).set_weights([np.zeros_like(w) for w in network.get_layer(head).get_weights()])
        return choices

    monkeypatch.setattr(artnet.training.lpft, "probe_into_heads", useless_probe)
    from_useless = train(config, tmp_path / "lp_ft_from_useless", sources)
    record = json.loads((tmp_path / "lp_ft_from_useless" / "probe.json").read_text())["fine_tune"]
    start, end = record["validation_mean_balanced_accuracy_start"], record["validation_mean_balanced_accuracy_end"]
    assert record["kept"] is True and end > start + 0.05, record
    assert validation_score(from_useless, sources, config.heads) == pytest.approx(end, abs=0.02)


@pytest.mark.parametrize("style_layers", [(), ("tiny_bn1",)])
def test_heads_from_the_probe_compute_the_probe_and_fine_tuning_never_ends_worse(
    tmp_path, tiny_weights, monkeypatch, style_layers
):
    """heads_from=probe (LP-FT): after the heads phase the model's image predictions are the probe's, fitted on
    the same cached features; fine-tuning then either raises the mean validation balanced accuracy or is undone."""
    import json

    import keras

    from artnet.data.preprocessing import decode_and_resize
    from artnet.models.artnet import POOLED, STYLE
    from artnet.training.feature_cache import style_layer_spec
    from artnet.training.probe import choose_and_fit, full_probabilities
    from artnet.training.train import train

    config = _tiny_cached_config(
        tmp_path,
        tiny_weights,
        monkeypatch,
        200,
        40,
        heads=("school", "type"),
        heads_from="probe",
        style_layers=style_layers,
        epochs=0,
        head_epochs=0,
        unfreeze="tiny_conv2",
    )
    sources = load_sources(config)
    model = train(config, tmp_path / "probe_only", sources)
    specs = [FeatureSpec("tiny", tiny_weights, 32)]
    if style_layers:
        specs.append(dataclasses.replace(specs[0], layer=style_layer_spec(style_layers)))

    def frozen(split):
        return np.concatenate([cached_features(sources[split], spec)[0] for spec in specs], 1).astype(np.float32)

    test = sources["test"]
    pixels = np.stack([decode_and_resize(encoded, 32).numpy() for encoded in test.images]).astype(np.float32)
    predicted = model.predict(pixels, verbose=0)
    # The model's own frozen features of the test images (float32; the cache rounds pooled ones to float16)
    frozen_outputs = [model.get_layer(POOLED).output] + ([model.get_layer(STYLE).output] if style_layers else [])
    own = keras.Model(model.input, frozen_outputs).predict(pixels, verbose=0)
    own = np.concatenate(own if style_layers else [own], axis=1)
    for head in model.heads:
        train_y, val_y = sources["train"].labels[head], sources["validation"].labels[head]
        # class_weight_power 1 (balanced losses): the probe in the heads is the balanced one
        probe, _ = choose_and_fit(head, frozen("train"), train_y, frozen("validation"), val_y, ("balanced",))
        expected = full_probabilities(probe, own, len(labels.VOCABULARIES[head]))
        np.testing.assert_allclose(predicted[head], expected, atol=1e-4)

    fine_tuned = dataclasses.replace(config, epochs=3, fine_tune_learning_rate=0.05, early_stopping_patience=0)
    tuned = train(fine_tuned, tmp_path / "lp_ft", sources)
    record = json.loads((tmp_path / "lp_ft" / "probe.json").read_text())["fine_tune"]
    start = record["validation_mean_balanced_accuracy_start"]
    # The probe's score, measured here too; and whatever it decided, the model it returns is no worse.
    assert start == pytest.approx(validation_score(model, sources, config.heads), abs=0.02)
    assert validation_score(tuned, sources, config.heads) >= start - 0.02
    after = tuned.predict(pixels, verbose=0)
    for head in model.heads:
        if record["kept"]:
            assert not np.allclose(after[head], predicted[head], atol=1e-3)
        else:
            np.testing.assert_allclose(after[head], predicted[head], atol=1e-5)

    # A probe that writes useless heads: fine-tuning clearly beats it, must be kept, and is what is returned.
    fine_tuning_is_kept_over_a_useless_probe(fine_tuned, sources, tmp_path, monkeypatch)


def test_heads_from_the_probe_then_fine_tuning_on_images_starts_from_the_probe_and_resumes_without_refitting(
    tmp_path, tiny_weights, monkeypatch
):
    """The full recipe's LP-FT: the probe is fitted on cached frozen features, fine-tuning then runs on images (the
    whole network, style layers included) and is kept only if it raises validation balanced accuracy; a rerun in
    the same workdir takes the probe and the fine-tuning from their done markers instead of fitting them again."""
    import json

    import artnet.training.lpft
    from artnet.data.preprocessing import decode_and_resize
    from artnet.training.train import train

    config = _tiny_cached_config(
        tmp_path,
        tiny_weights,
        monkeypatch,
        160,
        32,
        data={"feature_views": 0, "cache": False},
        heads=("school", "type"),
        heads_from="probe",
        style_layers=("tiny_bn1",),  # in the unfrozen part: fine on images, refused from the cache
        epochs=2,
        head_epochs=0,
        unfreeze="all",
        fine_tune_learning_rate=0.05,
        early_stopping_patience=0,
    )
    sources = load_sources(config)
    probe_only = train(dataclasses.replace(config, epochs=0), tmp_path / "probe_only", sources)
    tuned = train(config, tmp_path / "lp_ft", sources)

    record = json.loads((tmp_path / "lp_ft" / "probe.json").read_text())
    assert set(record["choices"]) == {"school", "type"}
    start = record["fine_tune"]["validation_mean_balanced_accuracy_start"]
    # The probe's score, measured here too; and whatever it decided, the model it returns is no worse.
    assert start == pytest.approx(validation_score(probe_only, sources, config.heads), abs=0.02)
    assert validation_score(tuned, sources, config.heads) >= start - 0.02
    epochs = [json.loads(line) for line in (tmp_path / "lp_ft" / "metrics.jsonl").read_text().splitlines()]
    assert [row["phase"] for row in epochs] == ["fine_tune", "fine_tune"]  # no gradient epochs for the heads

    test = sources["test"]
    pixels = np.stack([decode_and_resize(encoded, 32).numpy() for encoded in test.images]).astype(np.float32)
    probe_says, tuned_says = probe_only.predict(pixels, verbose=0), tuned.predict(pixels, verbose=0)
    for head in config.heads:
        if record["fine_tune"]["kept"]:
            assert not np.allclose(tuned_says[head], probe_says[head], atol=1e-3)
        else:  # undone: the model is the probe it started from
            np.testing.assert_allclose(tuned_says[head], probe_says[head], atol=1e-5)

    def no_refit(*args, **kwargs):
        raise AssertionError("the probe was fitted again on a resumed run")

    monkeypatch.setattr(artnet.training.lpft, "probe_into_heads", no_refit)
    resumed = train(config, tmp_path / "lp_ft", sources)
    again = resumed.predict(pixels, verbose=0)
    for head in config.heads:
        np.testing.assert_allclose(again[head], tuned_says[head], atol=1e-5)

    # A probe that writes useless heads: fine-tuning on images clearly beats it, must be kept, and is returned.
    fine_tuning_is_kept_over_a_useless_probe(config, sources, tmp_path, monkeypatch)


def test_heads_from_the_probe_is_refused_across_workers(monkeypatch):
    import artnet.training.strategy
    from artnet.training.errors import TrainingError
    from artnet.training.strategy import refuse_unsupported

    monkeypatch.setattr(artnet.training.strategy, "is_multi_worker", lambda strategy: True)
    with pytest.raises(TrainingError, match="Set heads_from=epochs"):
        refuse_unsupported(tf.distribute.get_strategy(), TrainConfig(heads_from="probe"))
    refuse_unsupported(tf.distribute.get_strategy(), TrainConfig(heads_from="epochs"))  # the image recipe trains
