"""Training on cached features instead of images: both phases, the same layers, losses and weights, a fraction
of the cost (the CPU path of `data.feature_views`).

Heads: on the frozen backbone's pooled features (seconds per epoch). Fine-tuning from `unfreeze`: the frozen front
of the backbone ran once per view into the cache (the input of `unfreeze`), and only the unfrozen tail runs per
step. The training graphs reuse the ArtNet's own layers, so what they learn is the model's. This is exact because
the front is frozen, BatchNormalization included (inference mode either way); the one difference from image
training is that augmentation is a fixed set of `feature_views` views. Kept apart from `train` because none of
the image pipeline, the strategy or the resumable state applies here.
"""

from __future__ import annotations

import dataclasses
import functools

import keras
import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.config import TrainConfig
from artnet.data import pipeline
from artnet.data.sources import Source
from artnet.data.years import normalised_years, year_sample_weights
from artnet.models.artnet import FEATURES, POOLED, STYLE, STYLE_NORM, ArtNet
from artnet.models.backbones import leaf_layers
from artnet.training.compile import compile_model, cut_layer, heads_only, set_trainable, weighted
from artnet.training.feature_cache import POOLED as POOLED_FEATURES
from artnet.training.feature_cache import FeatureSpec, cached_layers, style_layer_spec
from artnet.training.lpft import heads_from_probe, keep_fine_tuning_if_better, mean_balanced_accuracy
from artnet.training.records import JsonLines
from artnet.workdir import Workdir


@dataclasses.dataclass
class CachedRun:
    """What both phases on the cache share: the model whose layers they train, the config, the sources and their
    class-weight tables, the workdir, what the cache holds (`spec`) and, with style layers, the networks' second
    input (the cached style statistics) and its cache layer."""

    model: ArtNet
    config: TrainConfig
    sources: dict[str, Source]
    tables: dict
    workdir: Workdir
    spec: FeatureSpec
    style_inputs: list = dataclasses.field(default_factory=list)
    style_layer: tuple = ()


def fit_from_cache(model: ArtNet, config: TrainConfig, sources: dict, tables: dict, workdir: Workdir) -> None:
    """Both phases of `config` on cached features (see the top); `model`'s own layers learn."""
    run = CachedRun(model, config, sources, tables, workdir, cache_spec(model, config))
    if model.style_layers:
        refuse_unfrozen_style_layers(model, config)  # before any training, not after the heads phase
        run.style_layer = (style_layer_spec(model.style_layers),)
        run.style_inputs = [keras.Input((model.get_layer(STYLE).output.shape[-1],), name="style_statistics")]
    set_trainable(model, "heads", config)
    if config.heads_from == "probe":  # LP-FT: the heads start as the linear probe, fitted on the same features
        heads_from_probe(model, config, sources, workdir)
    elif config.head_epochs:
        last = min(config.head_epochs, config.epochs)
        network = heads_network(run)
        fit_on_cache(run, network, (POOLED_FEATURES, *run.style_layer), "heads", 0, last, config.learning_rate)
    if heads_only(config):
        return
    set_trainable(model, "fine_tune", config)
    network, cut = tail_network(run)
    layers = (cut, *run.style_layer)
    fit_on_cache(run, network, layers, "fine_tune", config.head_epochs, config.epochs, config.fine_tune_learning_rate)


def cache_spec(model: ArtNet, config: TrainConfig) -> FeatureSpec:
    return FeatureSpec(
        backbone=config.backbone,
        weights=config.backbone_weights,
        image_size=model.image_size,
        views=config.data.feature_views,
        augment=config.data.augment,
        framing=model.framing,
    )


def refuse_unfrozen_style_layers(model: ArtNet, config: TrainConfig) -> None:
    """Style statistics come from the cache, so their layers must lie below the unfrozen part (frozen: cacheable)."""
    if heads_only(config):
        return
    names = [layer.name for layer in leaf_layers(model.backbone)]
    unfrozen = set(names[names.index(config.unfreeze) :]) if config.unfreeze in names else set(names)
    if set(model.style_layers) & unfrozen:
        raise ValueError(
            f"style_layers {sorted(set(model.style_layers) & unfrozen)} lie in the unfrozen part "
            f"(from {config.unfreeze!r}), so their statistics cannot come from the feature cache: "
            "unfreeze later, use earlier style layers, or train on images (data.feature_views=0)"
        )


def on_top(run: CachedRun, pooled) -> dict:
    """The model's own layers above the pooled features: with style layers, the cached statistics normalised and
    joined to them; then dropout and each task's head."""
    model, features = run.model, pooled
    if run.style_inputs:
        style = model.get_layer(STYLE_NORM)(run.style_inputs[0])
        features = model.get_layer(FEATURES)([pooled, style])
    dropped = model.get_layer("dropout")(features)
    return {task: model.get_layer(task)(dropped) for task in model.tasks}


def heads_network(run: CachedRun) -> keras.Model:
    """The heads phase: cached pooled features (and style statistics) in, the heads out."""
    pooled_input = keras.Input((run.model.get_layer(POOLED).output.shape[-1],), name="pooled_features")
    return keras.Model([pooled_input, *run.style_inputs], on_top(run, pooled_input), name="heads_on_cache")


def tail_network(run: CachedRun) -> tuple[keras.Model, str]:
    """The fine-tuning phase: the cached input of `unfreeze` through the backbone's unfrozen tail and the heads;
    returns it with the layer whose output the cache holds."""
    model, backbone = run.model, run.model.backbone
    cut = cut_layer(backbone, run.config.unfreeze)
    tail = keras.Model(backbone.get_layer(cut).output, backbone.output, name="unfrozen_tail")
    cut_input = keras.Input(tuple(backbone.get_layer(cut).output.shape[1:]), name="cached_features")
    outputs = on_top(run, model.get_layer(POOLED)(tail(cut_input)))
    return keras.Model([cut_input, *run.style_inputs], outputs, name="tail_on_cache"), cut


def fit_on_cache(
    run: CachedRun, network: keras.Model, layer_names: tuple, phase: str, first_epoch, last_epoch, learning_rate
) -> None:
    """Epochs `first_epoch`..`last_epoch - 1` of `phase`: `network` fed the cached `layer_names`, every view of
    train and the plain view of validation, logged like the image path."""
    config, sources, model, workdir = run.config, run.sources, run.model, run.workdir
    train_data = cached_dataset(run, cached_inputs(run, "train", layer_names, run.spec.views), "train", True)
    val_data = cached_dataset(run, cached_inputs(run, "validation", layer_names, 1), "validation", False)
    network = weighted(network, config, model.tasks)
    compile_model(network, config, learning_rate, len(train_data) * (last_epoch - first_epoch))
    callbacks = cache_callbacks(workdir, phase, config)
    print(
        f"phase {phase} from the feature cache ({' + '.join(layer_names)}, {run.spec.views} view(s)): "
        f"epochs {first_epoch + 1}-{last_epoch}"
    )
    # Starting from the probe, fine-tuning must earn its keep on validation (`keep_fine_tuning_if_better`).
    keep_start = phase == "fine_tune" and config.heads_from == "probe"
    if keep_start:
        start_score = mean_balanced_accuracy(network, val_data, sources["validation"], model.heads)
        start_weights = model.get_weights()
    network.fit(
        train_data,
        validation_data=val_data,
        epochs=last_epoch,
        initial_epoch=first_epoch,
        callbacks=callbacks,
        shuffle=False,  # the dataset shuffles
        verbose=2,
    )
    if keep_start:
        keep_fine_tuning_if_better(model, network, val_data, sources["validation"], workdir, start_score, start_weights)


def cache_callbacks(workdir: Workdir, phase: str, config: TrainConfig) -> list[keras.callbacks.Callback]:
    """The image path's epoch records, and its early stopping; no resumable state (a cached run takes minutes)."""
    callbacks = [
        JsonLines(workdir.metrics_jsonl, phase),
        keras.callbacks.CSVLogger(str(workdir.metrics_csv), append=True),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    return callbacks


def cached_inputs(run: CachedRun, split: str, layer_names: tuple, views: int) -> list[np.ndarray]:
    """One (views, n, ...) array per network input; layers not cached yet cost one backbone pass for all of them."""
    specs = [dataclasses.replace(run.spec, layer=name, views=views) for name in layer_names]
    return cached_layers(run.sources[split], specs)


def cached_dataset(run: CachedRun, features: list[np.ndarray], split: str, training: bool) -> tf.data.Dataset:
    """Batches of `split`'s cached `features` (every view) with their targets; training ones shuffled, weighted by
    the class-weight tables and, with MixUp, blended (manifold MixUp: blends of cached features)."""
    config, source = run.config, run.sources[split]
    views = features[0].shape[0]
    x = tuple(array.reshape((-1, *array.shape[2:])) for array in features)
    x = x if len(x) > 1 else x[0]
    y, w = targets(run.model, source, run.tables if training else None, views)
    data = tf.data.Dataset.from_tensor_slices((x, y, w))
    if training:
        data = data.shuffle(views * len(source), seed=config.seed, reshuffle_each_iteration=True)
    as_float = functools.partial(tf.nest.map_structure, lambda a: tf.cast(a, tf.float32))
    data = data.batch(config.data.batch_size).map(lambda a, b, c: (as_float(a), b, c))
    if training and config.data.augment.mixup:
        alpha = config.data.augment.mixup
        data = data.map(lambda a, b, c: pipeline.mix_batch(a, b, c, alpha), num_parallel_calls=tf.data.AUTOTUNE)
    return data.prefetch(tf.data.AUTOTUNE)


def targets(model: ArtNet, source: Source, weight_tables: dict | None, views: int) -> tuple[dict, dict]:
    """Labels and sample weights per task, repeated for each view: as `pipeline.make_dataset` makes them
    (class-weighted and year-balanced in training; 1 per known label in validation, `weight_tables` None)."""
    ys, ws = {}, {}
    for head in model.heads:
        values = source.labels[head]
        table = weight_tables[head] if weight_tables else np.ones(len(labels.VOCABULARIES[head]), np.float32)
        ys[head] = np.tile(np.clip(values, 0, None), views)
        ws[head] = np.tile(pipeline.sample_weights(values, table), views)
    if model.year_head:
        ys[labels.YEAR] = np.tile(normalised_years(source.years)[0], views)
        ws[labels.YEAR] = np.tile(year_sample_weights(source.years, balance=weight_tables is not None), views)
    return ys, ws
