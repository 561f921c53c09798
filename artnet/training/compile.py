"""What each phase trains and how: which layers are trainable, the optimizer and its schedule, the losses and
metrics per task, and the loss weighting wrapped around the network.

Shared by every way a phase runs (Keras fit on images, artnet's own loop, fit on cached features), so that a
recipe means the same whichever path trains it.
"""

from __future__ import annotations

import keras

from artnet import labels
from artnet.config import TrainConfig
from artnet.models.artnet import ArtNet
from artnet.models.backbones import leaf_layers
from artnet.models.losses import head_loss
from artnet.models.weighting import MultiTaskModel
from artnet.models.year import GaussianYearNLL, YearAbsoluteError


def schedule(config: TrainConfig, learning_rate: float, steps: int):
    if config.schedule == "constant":
        return learning_rate
    if config.schedule == "cosine":
        return keras.optimizers.schedules.CosineDecay(learning_rate, decay_steps=max(1, steps), alpha=0.05)
    if config.schedule == "exponential":
        return keras.optimizers.schedules.ExponentialDecay(
            learning_rate, decay_steps=max(1, steps // 4), decay_rate=0.5
        )
    raise ValueError(f"unknown schedule {config.schedule!r}: cosine, exponential or constant")


def make_optimizer(config: TrainConfig, learning_rate: float, steps: int) -> keras.optimizers.Optimizer:
    rate = schedule(config, learning_rate, steps)
    if config.optimizer == "sgd":
        return keras.optimizers.SGD(rate, momentum=config.momentum, weight_decay=config.weight_decay or None)
    if config.optimizer == "adam":
        return keras.optimizers.Adam(rate)
    if config.optimizer == "adamw":
        return keras.optimizers.AdamW(rate, weight_decay=config.weight_decay or 1e-4)
    raise ValueError(f"unknown optimizer {config.optimizer!r}: sgd, adam or adamw")


def compile_model(model: ArtNet, config: TrainConfig, learning_rate: float, steps: int) -> None:
    """Losses and weighted metrics per task: the heads (cross-entropy, top-1, top-3) and the year head if any
    (Gaussian NLL, mean absolute error in years). `model.tasks` (or `heads`) says which."""
    tasks = tuple(getattr(model, "tasks", None) or model.heads)
    losses, metrics = {}, {}
    for task in tasks:
        if task == labels.YEAR:
            losses[task] = GaussianYearNLL(name="year_loss")
            metrics[task] = [YearAbsoluteError(name="mae_years")]
            continue
        losses[task] = head_loss(task, len(labels.VOCABULARIES[task]), config.label_smoothing, config.timeframe_loss)
        metrics[task] = [
            keras.metrics.SparseCategoricalAccuracy(name="top1"),
            keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
        ]
    model.compile(
        optimizer=make_optimizer(config, learning_rate, steps),
        loss=losses,
        loss_weights={task: float(config.loss_weights.get(task, 1.0)) for task in tasks},
        # Weighted, so that unknown labels (weight 0) count in no metric.
        weighted_metrics=metrics,
    )


def set_trainable(model: ArtNet, phase: str, config: TrainConfig) -> None:
    backbone = model.backbone
    if phase == "heads" or config.unfreeze == "none":
        backbone.trainable = False
        return
    backbone.trainable = True
    layers = leaf_layers(backbone)
    if config.unfreeze != "all":
        names = [layer.name for layer in layers]
        if config.unfreeze not in names:
            raise ValueError(
                f"unfreeze={config.unfreeze!r} is not a layer of {model.backbone_name} "
                f"(its layers run from {names[0]!r} to {names[-1]!r}; use 'all', 'none' or one of their names)"
            )
        for layer in layers[: names.index(config.unfreeze)]:
            layer.trainable = False
    if config.freeze_batchnorm:  # small fine-tuning batches would wreck the ImageNet statistics
        for layer in layers:
            if isinstance(layer, keras.layers.BatchNormalization):
                layer.trainable = False


def heads_only(config: TrainConfig) -> bool:
    return config.unfreeze == "none" or config.head_epochs >= config.epochs


def cut_layer(backbone: keras.Model, unfreeze: str) -> str:
    """The layer whose output feeds `unfreeze`: everything up to it stays frozen, so its output can be cached."""
    tensor = backbone.get_layer(unfreeze).input
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(f"cannot cache the input of {unfreeze!r}: it is not produced by one layer")
    return history.operation.name


def weighted(network: keras.Model, config: TrainConfig, tasks) -> keras.Model:
    """`network` as it trains under `config.loss_weighting`: itself for fixed weights (the plain compiled sum),
    else wrapped in the strategy's `MultiTaskModel` (own train step; saves as the network it wraps). `tasks`: the
    heads, and `year` with a year head."""
    if not isinstance(network, ArtNet):
        network.tasks = tuple(tasks)  # what compile_model reads
    if config.loss_weighting == "fixed":
        return network
    return MultiTaskModel(network, strategy=config.loss_weighting, heads=tuple(tasks), seed=config.seed)
