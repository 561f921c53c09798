"""Training configuration as code (big_vision style): one Python file per experiment arm.

A config file defines `get_config(variant: str | None) -> TrainConfig`; `artnet train --config
path.py:variant` loads it, `--set epochs=2 --set data.batch_size=4` overrides fields, and the run's workdir
gets the resolved `config.json`.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
from pathlib import Path
from typing import Any

from artnet import labels
from artnet.data import Augment


@dataclasses.dataclass
class DataConfig:
    source: str = "wga"  # "wga" (a built TFDS config) or "folder" (images + labels.csv)
    wga_config: str = "artist"
    data_dir: str = "data/tfds"
    folder: str = ""  # for source == "folder"
    csv: str = ""  # default <folder>/labels.csv
    split_by: str = "author"  # how a folder is split 70/15/15 (hash of this column)
    batch_size: int = 16  # per replica; the global batch is this x replicas
    cache: bool = True  # decoded uint8 images in memory (3.1 GB for 9.5k images at 331 px)
    augment: Augment = dataclasses.field(default_factory=Augment)


@dataclasses.dataclass
class TrainConfig:
    backbone: str = "efficientnet_lite0"
    backbone_weights: str | None = "imagenet"
    image_size: int | None = None  # None = the backbone's own size
    heads: tuple[str, ...] = labels.HEADS
    dropout: float = 0.2
    data: DataConfig = dataclasses.field(default_factory=DataConfig)
    # Optimisation (the 2020 report: SGD, momentum 0.88, lr 1e-4 ... 2.5e-4, decaying).
    optimizer: str = "sgd"  # sgd | adam | adamw
    learning_rate: float = 2.5e-4
    momentum: float = 0.88
    weight_decay: float = 0.0
    schedule: str = "cosine"  # cosine | exponential | constant
    loss_weights: dict[str, float] = dataclasses.field(default_factory=lambda: dict.fromkeys(labels.HEADS, 1.0))
    class_weight_power: float = 1.0  # 1 = balanced, 0.5 = square root, 0 = none
    label_smoothing: float = 0.0
    # Two phases: heads only (backbone frozen), then fine-tuning from `unfreeze` at a lower rate.
    epochs: int = 10  # total, both phases
    head_epochs: int = 2
    unfreeze: str = "all"  # all | none | the name of the first backbone layer to train
    fine_tune_learning_rate: float = 1e-4
    freeze_batchnorm: bool = True
    steps_per_epoch: int | None = None  # cap, for dry runs
    early_stopping_patience: int = 4
    backup_every_steps: int | None = None  # also back up mid-epoch (a killed epoch restarts with these weights)
    # Hardware.
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16
    strategy: str = "auto"  # auto | mirrored | multi_worker | none
    seed: int = 0
    description: str = ""

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def from_dict(data: dict) -> TrainConfig:
    """Inverse of `TrainConfig.to_dict` (for `config.json`)."""
    data = dict(data)
    data_config = dict(data.pop("data", {}))
    augment = Augment(**data_config.pop("augment", {}))
    config = TrainConfig(**data, data=DataConfig(**data_config, augment=augment))
    config.heads = tuple(config.heads)
    return config


def load_config(spec: str) -> TrainConfig:
    """`path/to/config.py[:variant]` -> the config its `get_config(variant)` returns."""
    path_text, _, variant = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    module_spec = importlib.util.spec_from_file_location(f"artnet_config_{path.stem}", path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(variant)")
    config = module.get_config(variant or None)
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path}: get_config must return an artnet.config.TrainConfig")
    return config


def apply_overrides(config: TrainConfig, overrides: list[str]) -> TrainConfig:
    """`["epochs=2", "data.batch_size=4", "heads=school,type"]` applied in place, values parsed as JSON and
    checked against the field's declared type (`epochs=ten` is refused here, not deep inside Keras)."""
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep:
            raise ValueError(f"override {item!r} is not key=value")
        target: Any = config
        *parents, leaf = key.split(".")
        for parent in parents:
            target = getattr(target, parent, None) if dataclasses.is_dataclass(target) else None
        fields = {field.name: field for field in dataclasses.fields(target)} if dataclasses.is_dataclass(target) else {}
        if leaf not in fields:
            raise ValueError(f"unknown config field {key!r} in override {item!r}")
        try:
            value = json.loads(raw)
        except json.JSONDecodeError:
            value = raw
        annotation = fields[leaf].type  # a string under `from __future__ import annotations`, else a type
        setattr(target, leaf, _typed(value, getattr(annotation, "__name__", str(annotation)), item))
    return config


def _typed(value: Any, annotation: str, item: str) -> Any:
    """`value` as the field annotated `annotation` (e.g. "int | None", "tuple[str, ...]") takes it, or ValueError."""
    kinds = {part.strip() for part in annotation.split("|")}
    if any(kind.startswith("tuple") for kind in kinds):
        return tuple(value.split(",")) if isinstance(value, str) else tuple(value)
    if value is None and "None" in kinds:
        return None
    if isinstance(value, bool):
        if "bool" in kinds:
            return value
    elif isinstance(value, int) and ("int" in kinds or "float" in kinds):
        return value if "int" in kinds else float(value)
    elif isinstance(value, float) and "float" in kinds:
        return value
    elif isinstance(value, str) and "str" in kinds:
        return value
    elif isinstance(value, dict) and any(kind.startswith("dict") for kind in kinds):
        return value
    raise ValueError(f"override {item!r}: the field takes {annotation}, not {value!r}")
