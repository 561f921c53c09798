"""Training configuration as code (big_vision style), plain dataclasses: importing this needs no TensorFlow.

A recipe is one Python file defining `get_config(arg: str | None) -> TrainConfig`; `artnet train --config
experiments/configs/cpu.py:multihead` loads it, and the part after `:` names the arm (`multihead`,
`single_school`, ...; see `ARMS`) and options. `--set epochs=2 --set data.batch_size=4` overrides fields, and
the run's workdir gets the resolved `config.json`. Configs are validated once, here: a misspelt head or
loss-weight key is refused with the name it was probably meant to be.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import importlib.util
import json
import sys
from pathlib import Path
from typing import Any

from artnet import labels


@dataclasses.dataclass
class Augment:
    """The 2020 report's augmentations, as ranges; all zero = none."""

    flip: bool = True
    rotation_degrees: float = 10.0
    shift: float = 0.1  # fraction of the image size
    zoom: float = 0.1  # +- fraction
    randaugment: bool = False
    # MixUp (Zhang et al. 2018): each training example blended with another of its batch, lambda ~ Beta(a, a);
    # 0 = off. On the feature cache the blend is of cached features (manifold MixUp, Verma et al. 2019).
    mixup: float = 0.0
    # The feature cache's views 2 and on as phone photos' cut-outs (`artnet.data.photo_residue`: a slight
    # perspective, a sliver of frame, colour cast, falloff, glare, blur, noise, JPEG) instead of affine warps.
    photo: bool = False
    # With `photo`: the cut-outs also carry a phone camera's own processing (exposure, tone curve, saturation,
    # vignetting, sharpening, hand shake: `photo_residue(camera=True)`), not only the gallery's light on the canvas.
    camera: bool = False
    # With `photo`: half the cut-outs took the frame (or mount) with the picture, a band all round
    # (`photo_residue(frame=True)`): the photo step's commonest miss on a framed painting.
    frame: bool = False
    # (camera and frame were each tried for the main job and not kept: experiments/results/README.md, photos.)


# How a painting becomes a square (artnet.data.preprocessing.resize_and_crop); here, without TensorFlow, for validation.
FRAMINGS = ("crop", "squash")


@dataclasses.dataclass
class DataConfig:
    source: str = "wga"  # "wga" (a built TFDS config) or "folder" (images + labels.csv)
    wga_config: str = "artist"
    data_dir: str = "data/tfds"
    folder: str = ""  # for source == "folder"
    csv: str = ""  # default <folder>/labels.csv
    # How each painting becomes a square (FRAMINGS): "crop" keeps its proportions and cuts
    # the ends of an elongated one, "squash" stretches the whole painting (what the WikiArt sample's images are).
    framing: str = "crop"
    split_by: str = "author"  # how a folder is split 70/15/15 (groups of this column: no group in two splits)
    stratify: bool = True  # group-stratified folder splits (every class of >= 3 painters has training painters)
    # More labelled folders (labels.csv + images, blank = unknown) whose splits join the main source's splits,
    # e.g. the WikiArt sample beside the wga build. A label one source lacks is unknown there: masked, not lost.
    extra_folders: tuple[str, ...] = ()
    # Heads-only training (no fine-tuning phase) reads the frozen backbone's pooled features from the feature
    # cache (`artnet.training.feature_cache`), this many views per training image (1 = plain; 2 adds the mirror
    # image; more
    # add augmented warps): the backbone runs once per view, not once per epoch. 0 = through the pipeline.
    feature_views: int = 0
    # Train on the painters whose hash falls below this fraction (nested: 0.1 lies inside 0.25 ...): learning
    # curves. Validation and test stay whole.
    train_fraction: float = 1.0

    def __post_init__(self):
        self.extra_folders = tuple(self.extra_folders)  # config.json holds a list

    batch_size: int = 16  # per replica; the global batch is this x replicas
    cache: bool = True  # decoded uint8 images in memory (3.1 GB for 9.5k images at 331 px)
    shuffle_buffer: int = 2048  # training examples shuffled at a time; 1 = the source's order (exact comparisons)
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
    # How the heads' losses combine: fixed (loss_weights), uncertainty (Kendall et al. 2018), dwa (Liu et al.
    # 2019) or pcgrad (Yu et al. 2020); see artnet.models.weighting.
    loss_weighting: str = "fixed"
    class_weight_power: float = 1.0  # 1 = balanced, 0.5 = square root, 0 = none
    label_smoothing: float = 0.0
    # "ordinal": the timeframe head learns soft targets over neighbouring 50-year blocks (a Gaussian of width one
    # block), so a near miss costs less than a blunder; "crossentropy": the blocks as unrelated classes.
    timeframe_loss: str = "crossentropy"
    # A fourth task: the year as a number with an uncertainty (Gaussian NLL, `artnet.models.year`), trained where
    # the year is known and masked elsewhere; its weight is `loss_weights["year"]` (default 1).
    year_head: bool = False
    # Backbone layers whose per-channel mean and standard deviation the heads see beside the pooled features
    # (`artnet.models.artnet.ChannelStatistics`): style statistics of mid-level maps. () = pooled features only.
    style_layers: tuple[str, ...] = ()
    # Two phases: heads only (backbone frozen), then fine-tuning from `unfreeze` at a lower rate.
    epochs: int = 10  # total, both phases
    head_epochs: int = 2
    # How the heads phase trains: "epochs" (head_epochs of gradient steps) or "probe": each head is the linear
    # probe's logistic regression (scikit-learn, its L2 strength chosen on validation) on the cached frozen
    # features, written into the model's layers, so fine-tuning (from the feature cache or on images) starts from
    # the probe (LP-FT, Kumar et al. 2022) and is undone unless it raises the heads' mean validation balanced
    # accuracy.
    heads_from: str = "epochs"
    unfreeze: str = "all"  # all | none | the name of the first backbone layer to train
    fine_tune_learning_rate: float = 1e-4
    freeze_batchnorm: bool = True
    steps_per_epoch: int | None = None  # cap, for dry runs
    early_stopping_patience: int = 4
    # Calibration (temperature and conformal sets) is fitted on answers about painters the model never saw: the
    # validation split's, and with K >= 2 also the training painters', each from one of K models trained without
    # its fold of painters (`artnet.training.cross_fit`; from the feature cache). 0 = validation alone.
    calibration_folds: int = 0
    backup_every_steps: int | None = None  # also back up mid-epoch (a killed epoch restarts with these weights)
    # Hardware.
    precision: str = "auto"  # auto | float32 | mixed_float16 | mixed_bfloat16
    strategy: str = "auto"  # auto | mirrored | multi_worker | none
    # The training loop: "keras" (fit with its callbacks), "custom" (artnet.training.loop: strategy.run over a
    # distributed
    # dataset, the one that trains under multi_worker) or "auto" (custom under multi_worker, else keras).
    loop: str = "auto"
    seed: int = 0
    description: str = ""

    def __post_init__(self):
        self.validate()

    def validate(self) -> TrainConfig:
        """Normalise `heads` (fixed order) and refuse what would otherwise be silently ignored."""
        self.heads = labels.validate_heads(self.heads)
        self.style_layers = tuple(self.style_layers)  # a list from config.json: the same config
        labels.validate_head_keys({k: v for k, v in self.loss_weights.items() if k != labels.YEAR}, "loss_weights")
        if labels.YEAR in self.loss_weights and not self.year_head:
            raise ValueError("loss_weights has a 'year' weight but year_head is off: set year_head=true or drop it")
        strategies = ("fixed", "uncertainty", "dwa", "pcgrad")  # artnet.models.weighting.STRATEGIES (no TF here)
        if self.loss_weighting not in strategies:
            close = difflib.get_close_matches(str(self.loss_weighting), strategies, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise ValueError(f"unknown loss_weighting {self.loss_weighting!r}{hint}; one of {', '.join(strategies)}")
        if self.loop not in ("auto", "keras", "custom"):
            raise ValueError(f"loop must be auto, keras or custom, got {self.loop!r}")
        if self.loop == "keras" and self.strategy == "multi_worker":
            raise ValueError("loop=keras cannot train under strategy=multi_worker (keras-team/keras#20585): use auto")
        if self.timeframe_loss not in ("crossentropy", "ordinal"):
            raise ValueError(f"timeframe_loss must be 'crossentropy' or 'ordinal', got {self.timeframe_loss!r}")
        if self.heads_from not in ("epochs", "probe"):
            raise ValueError(f"heads_from must be 'epochs' or 'probe', got {self.heads_from!r}")
        if self.heads_from == "probe" and not self.backbone_weights:
            raise ValueError("heads_from=probe fits the probe on a pretrained network's features: set backbone_weights")
        if self.heads_from == "probe" and self.year_head:
            raise ValueError("heads_from=probe fits the class heads only: train a year head with heads_from=epochs")
        if self.data.framing not in FRAMINGS:
            raise ValueError(f"data.framing must be one of {', '.join(FRAMINGS)}, got {self.data.framing!r}")
        if self.calibration_folds == 1 or self.calibration_folds < 0:
            raise ValueError(
                f"calibration_folds must be 0 (validation alone) or at least 2, got {self.calibration_folds}"
            )
        if self.calibration_folds and not (self.data.feature_views and self.backbone_weights):
            raise ValueError(
                "calibration_folds trains a model per fold, from the feature cache: set data.feature_views >= 1 "
                "with pretrained backbone_weights, or calibration_folds=0 (validation alone)"
            )
        if not 0.0 <= float(self.label_smoothing) < 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1), got {self.label_smoothing}")
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


# An arm is (recipe, heads): the same recipe file makes the multi-head model and each single-head model.
ARMS: dict[str, tuple[str, ...]] = {
    "multihead": labels.HEADS,
    **{f"single_{head}": (head,) for head in labels.HEADS},
}


def parse_arm(arg: str | None, default: str = "multihead") -> tuple[str, dict[str, str]]:
    """`"multihead"` or `"single_school,split=image"` -> (arm name, {option: value}); unknown arms refused."""
    parts = [part.strip() for part in (arg or "").split(",") if part.strip()]
    name = default
    options = {}
    for part in parts:
        key, sep, value = part.partition("=")
        if sep:
            options[key.strip()] = value.strip()
        else:
            name = part
    if name not in ARMS:
        close = difflib.get_close_matches(name, ARMS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(f"unknown arm {name!r}{hint}; the arms are {', '.join(ARMS)}")
    return name, options


def from_dict(data: dict) -> TrainConfig:
    """Inverse of `TrainConfig.to_dict` (for `config.json`)."""
    data = dict(data)
    data_config = dict(data.pop("data", {}))
    augment = Augment(**data_config.pop("augment", {}))
    return TrainConfig(**data, data=DataConfig(**data_config, augment=augment))


def load_config(spec: str) -> TrainConfig:
    """`path/to/recipe.py[:arg]` -> the validated config its `get_config(arg)` returns."""
    path_text, _, arg = spec.partition(":")
    path = Path(path_text)
    if not path.is_file():
        raise FileNotFoundError(f"config file not found: {path}")
    module = import_config_file(path)
    if not hasattr(module, "get_config"):
        raise ValueError(f"{path} defines no get_config(arg)")
    config = module.get_config(arg or None)
    if not isinstance(config, TrainConfig):
        raise ValueError(f"{path}: get_config must return an artnet.config.TrainConfig")
    return config.validate()


def import_config_file(path: Path):
    """Import a config file as a module of its package, so recipes can import each other relatively.

    A file inside folders that hold `__init__.py` (experiments/configs/cpu.py) is imported as
    `experiments.configs.cpu`, each enclosing package registered from its own folder: no `sys.path` edits,
    and the same file is imported once however it is named on the command line.
    """
    path = path.resolve()
    packages = []
    folder = path.parent
    while (folder / "__init__.py").is_file():
        packages.insert(0, folder)
        folder = folder.parent
    names = [package.name for package in packages]
    for index, package in enumerate(packages):
        name = ".".join(names[: index + 1])
        known = sys.modules.get(name)
        if known is not None and Path(getattr(known, "__file__", "") or "").resolve().parent == package:
            continue
        spec = importlib.util.spec_from_file_location(
            name, package / "__init__.py", submodule_search_locations=[str(package)]
        )
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        spec.loader.exec_module(module)
    if names:
        return importlib.import_module(".".join([*names, path.stem]))
    spec = importlib.util.spec_from_file_location(f"artnet_config_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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
    return config.validate()


def _typed(value: Any, annotation: str, item: str) -> Any:
    """`value` as the field annotated `annotation` (e.g. "int | None", "tuple[str, ...]") takes it, or ValueError."""
    kinds = {part.strip() for part in annotation.split("|")}
    if any(kind.startswith("tuple") for kind in kinds):
        return tuple(item for item in value.split(",") if item) if isinstance(value, str) else tuple(value)
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
