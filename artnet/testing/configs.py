"""A tiny-backbone training config for tests and smoke runs: seconds per epoch on a CPU, nothing downloaded."""

from __future__ import annotations

import dataclasses

from artnet.config import Augment, DataConfig, TrainConfig

NO_AUGMENT = Augment(flip=False, rotation_degrees=0, shift=0, zoom=0)


def tiny_config(data: dict | None = None, **overrides) -> TrainConfig:
    """The tiny backbone from scratch (no weights: one phase), Adam at 0.01, constant rate, no early stopping,
    cached unaugmented images; `overrides` replace fields, `data` replaces fields of the DataConfig."""
    config = TrainConfig(
        backbone="tiny",
        backbone_weights=None,
        image_size=32,
        optimizer="adam",
        learning_rate=0.01,
        fine_tune_learning_rate=0.01,
        schedule="constant",
        epochs=15,
        head_epochs=0,
        early_stopping_patience=0,
        data=DataConfig(batch_size=32, cache=True, augment=NO_AUGMENT),
    )
    config = dataclasses.replace(config, **overrides)
    if data:
        config.data = dataclasses.replace(config.data, **data)
    return config.validate()


def tiny_cached_config(folder, weights: str, data: dict | None = None, **fields) -> TrainConfig:
    """The tiny backbone with saved `weights` (pretrained, so the feature cache applies) on the labelled `folder`,
    trained from the cache: batches of 32, two views unless `data` (DataConfig fields) says otherwise; `fields`
    are TrainConfig fields."""
    data = {"batch_size": 32, "feature_views": 2, **(data or {})}
    return TrainConfig(
        backbone="tiny",
        backbone_weights=weights,
        image_size=32,
        data=DataConfig(source="folder", folder=str(folder), **data),
        **fields,
    )
