"""Joint training of ArtNet's heads: strategy, precision, two phases, resumable, logged to a workdir.

What lands in the workdir (names in `artnet.workdir.Workdir`): the resolved config, the train-split label counts
(majority baselines, model card), one metrics row / JSON line per epoch and TensorBoard logs, BackupAndRestore
state (two copies: a killed run resumes where it stopped), `best.keras` (the lowest validation loss of the whole
run, both phases, across resumes) and `model.keras` (the last epoch's weights, or, with early stopping, its
phase's best).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from artnet import labels
from artnet.config import TrainConfig
from artnet.data import pipeline
from artnet.data.sources import SPLITS, Source, concat_sources, folder_source, painter_fraction, wga_source
from artnet.models.artnet import POOLED, ArtNet
from artnet.models.backbones import leaf_layers
from artnet.models.losses import head_loss
from artnet.workdir import Workdir


class TrainingError(RuntimeError):
    """A run that cannot go on as asked; the message says why and what to do."""


# --- hardware --------------------------------------------------------------------------------------------


def make_strategy(name: str) -> tf.distribute.Strategy:
    """Create before any other TensorFlow work: multi-worker collectives must be set up at program start."""
    if name == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=multi_worker_resolver())
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}: auto, mirrored, multi_worker or none")


def multi_worker_resolver():
    """The cluster of a multi-worker job: `TF_CONFIG` when set, else Slurm's own variables under `srun` (one task
    per node, each using all of its node's GPUs), else ValueError saying what to set."""
    if "TF_CONFIG" in os.environ:
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    if "SLURM_PROCID" in os.environ and "SLURM_STEP_NODELIST" in os.environ:
        return tf.distribute.cluster_resolver.SlurmClusterResolver(
            port_base=int(os.environ.get("ARTNET_SLURM_PORT", "2222")),
            gpus_per_node=1,  # with auto_set_gpu=False these only shape the task list: one task per node
            gpus_per_task=1,
            auto_set_gpu=False,
        )
    raise ValueError(
        "strategy multi_worker needs its cluster: TF_CONFIG describing the cluster and this worker's task, or a "
        "Slurm job step (srun) with one task per node"
    )


def refuse_unsupported(strategy: tf.distribute.Strategy, config: TrainConfig | None = None) -> None:
    """Stop, before any data is loaded, on a combination that cannot train, saying what to do instead."""
    from artnet.training.loop import is_multi_worker

    if not is_multi_worker(strategy) or config is None:
        return
    if config.loop == "keras":
        raise TrainingError(
            "strategy multi_worker with loop=keras: Keras 3.15's fit() cannot train under MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585, open upstream). Use loop=auto (artnet's own loop, artnet.training.loop)."
        )
    if config.data.feature_views and config.backbone_weights:
        raise TrainingError(
            "strategy multi_worker with the feature cache (data.feature_views > 0): the cache is a one-machine CPU "
            "shortcut. Set data.feature_views=0 to train on images across the workers."
        )
    if config.heads_from == "probe":
        raise TrainingError(
            "strategy multi_worker with heads_from=probe: the probe is fitted by scikit-learn on one machine, and a "
            "weight set on one worker is not set on the others. Set heads_from=epochs to train across the workers."
        )


def uses_loop(config: TrainConfig, strategy: tf.distribute.Strategy) -> bool:
    """Whether training runs `artnet.training.loop` (custom, any strategy) or Keras' fit (see `TrainConfig.loop`)."""
    from artnet.training.loop import is_multi_worker

    return config.loop == "custom" or (config.loop == "auto" and is_multi_worker(strategy))


def set_precision(name: str) -> str:
    """Set Keras' global dtype policy before any model is built; returns the policy's name."""
    if name == "auto":
        name = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    if name not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise ValueError(f"unknown precision {name!r}: auto, float32, mixed_float16 or mixed_bfloat16")
    keras.mixed_precision.set_global_policy(name)
    return name


# --- data ------------------------------------------------------------------------------------------------


def load_sources(config: TrainConfig) -> dict[str, Source]:
    """Train / validation / test of the config's data: its main source plus the same split of each extra folder."""
    settings = config.data
    if settings.source not in ("wga", "folder"):
        raise ValueError(f"unknown data source {settings.source!r}: wga or folder")

    def main_source(split: str) -> Source:
        if settings.source == "wga":
            return wga_source(settings.wga_config, split, settings.data_dir)
        return folder_source(
            settings.folder, settings.csv or None, split=split, split_by=settings.split_by, stratify=settings.stratify
        )

    def extra_sources(split: str) -> list[Source]:
        return [
            folder_source(folder, split=split, split_by=settings.split_by, stratify=settings.stratify)
            for folder in settings.extra_folders
        ]

    sources = {split: concat_sources([main_source(split), *extra_sources(split)]) for split in SPLITS}
    sources["train"] = painter_fraction(sources["train"], settings.train_fraction)
    return sources


def write_label_counts(workdir: Workdir, train: Source) -> dict[str, list[int]]:
    """The training split's counts per head and class, saved in the workdir (majority baselines, model card)."""
    counts = label_counts(train)
    years = train.years[train.years >= 0]
    year_mean = round(float(years.mean()), 1) if len(years) else None  # the year head's constant-answer baseline
    record = {"train_examples": len(train), "counts": counts, "source": train.name, "year_mean": year_mean}
    workdir.label_counts.write_text(json.dumps(record))
    return counts


def label_counts(source: Source) -> dict[str, list[int]]:
    return {
        head: np.bincount(values[values >= 0], minlength=len(labels.VOCABULARIES[head])).tolist()
        for head, values in source.labels.items()
    }


# --- model -----------------------------------------------------------------------------------------------


def _schedule(config: TrainConfig, learning_rate: float, steps: int):
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
    rate = _schedule(config, learning_rate, steps)
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
    from artnet.models.year import GaussianYearNLL, YearAbsoluteError

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


# --- logging ---------------------------------------------------------------------------------------------


class JsonLines(keras.callbacks.Callback):
    """One JSON line of metrics per epoch, with phase and wall time."""

    def __init__(self, path: Path, phase: str):
        super().__init__()
        self.path, self.phase = Path(path), phase
        self._started = time.monotonic()

    def on_epoch_end(self, epoch, logs=None):
        record = {"epoch": epoch + 1, "phase": self.phase, "seconds": round(time.monotonic() - self._started, 2)}
        record.update({k: float(v) for k, v in (logs or {}).items()})
        with self.path.open("a") as out:
            out.write(json.dumps(record) + "\n")


def _callbacks(workdir: Workdir | Path, phase: str, config: TrainConfig) -> list[keras.callbacks.Callback]:
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    callbacks = [
        keras.callbacks.BackupAndRestore(
            str(workdir.backup(phase)),
            save_freq=config.backup_every_steps or "epoch",
            double_checkpoint=True,  # a state cut short by a kill falls back to the previous one
            delete_checkpoint=False,
        ),
        # A new callback per phase and per process: seed it with the best so far, or the first epoch of each
        # phase (and of each resumed run) would overwrite best.keras whatever its loss.
        keras.callbacks.ModelCheckpoint(
            str(workdir.best_model),
            monitor="val_loss",
            save_best_only=True,
            initial_value_threshold=best_validation_loss(workdir),
        ),
        keras.callbacks.TerminateOnNaN(),
        keras.callbacks.CSVLogger(str(workdir.metrics_csv), append=True),
        JsonLines(workdir.metrics_jsonl, phase),
    ]
    if config.early_stopping_patience:
        callbacks.append(
            keras.callbacks.EarlyStopping(
                monitor="val_loss", patience=config.early_stopping_patience, restore_best_weights=True
            )
        )
    try:
        import tensorboard  # noqa: F401  (TF 2.21 no longer brings it)

        callbacks.append(keras.callbacks.TensorBoard(str(workdir.tensorboard), write_graph=False))
    except ImportError:
        pass
    return callbacks


def best_validation_loss(workdir: Workdir | Path) -> float | None:
    """The lowest val_loss logged in `workdir`, if best.keras holds it (else None: any epoch may save)."""
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    log = workdir.metrics_jsonl
    if not workdir.best_model.is_file() or not log.is_file():
        return None
    losses = []
    for line in log.read_text().splitlines():
        try:
            losses.append(float(json.loads(line)["val_loss"]))
        except (ValueError, KeyError, TypeError):
            continue  # a line cut short by a kill, or an epoch without validation
    return min(losses, default=None)


def check_backup(backup_dir: Path) -> None:
    """Refuse, with what to do, a backup that BackupAndRestore could not read (and has no older copy of)."""
    import h5py

    latest = backup_dir / "latest.weights.h5"
    if not latest.exists() or Path(f"{latest}.bkp").exists():
        return  # nothing to resume, or Keras falls back to the previous copy itself
    try:
        with h5py.File(latest, "r"):
            pass
    except OSError as error:
        raise TrainingError(
            f"the resume state {latest} is unreadable ({error}); it was probably cut short when a run was killed "
            f"while writing it. Delete {backup_dir} to restart this phase from its beginning (earlier phases and "
            "best.keras are kept)."
        ) from error


# --- loss weighting ---------------------------------------------------------------------------------------


def weighted(network: keras.Model, config: TrainConfig, tasks) -> keras.Model:
    """`network` as it trains under `config.loss_weighting`: itself for fixed weights (the plain compiled sum),
    else wrapped in the strategy's `MultiTaskModel` (own train step; saves as the network it wraps). `tasks`: the
    heads, and `year` with a year head."""
    if not isinstance(network, ArtNet):
        network.tasks = tuple(tasks)  # what compile_model reads
    if config.loss_weighting == "fixed":
        return network
    from artnet.models.weighting import MultiTaskModel

    return MultiTaskModel(network, strategy=config.loss_weighting, heads=tuple(tasks), seed=config.seed)


# --- training from the feature cache ----------------------------------------------------------------------


def heads_only(config: TrainConfig) -> bool:
    return config.unfreeze == "none" or config.head_epochs >= config.epochs


def cut_layer(backbone: keras.Model, unfreeze: str) -> str:
    """The layer whose output feeds `unfreeze`: everything up to it stays frozen, so its output can be cached."""
    tensor = backbone.get_layer(unfreeze).input
    history = getattr(tensor, "_keras_history", None)
    if history is None:
        raise ValueError(f"cannot cache the input of {unfreeze!r}: it is not produced by one layer")
    return history.operation.name


def mean_balanced_accuracy(network: keras.Model, data: tf.data.Dataset, source: Source, heads) -> float:
    """The heads' mean balanced accuracy over `data` (batches of `source`'s examples, in order, one view)."""
    from sklearn.metrics import balanced_accuracy_score

    predicted = network.predict(data.map(lambda x, y, w: (x,)), verbose=0)  # (x,): a tuple x is the inputs
    scores = []
    for head in heads:
        known = source.labels[head] >= 0
        if known.any():
            choice = np.asarray(predicted[head]).argmax(axis=1)
            scores.append(balanced_accuracy_score(source.labels[head][known], choice[known]))
    return float(np.mean(scores))


def heads_from_probe(model: ArtNet, config: TrainConfig, sources: dict, workdir: Workdir) -> None:
    """The heads phase of `heads_from=probe`: each head becomes its linear probe, fitted by scikit-learn on the
    frozen features that the heads see (from the feature cache), its C chosen on validation (see
    `artnet.training.probe`)."""
    from artnet.training.probe import probe_into_heads

    choices = probe_into_heads(model, config, sources)
    workdir.probe_choices.write_text(json.dumps({"choices": choices}, indent=2))
    print(
        "phase heads: each head is its linear probe (C chosen on validation): "
        + ", ".join(
            f"{head} C={choice['C']:g} {choice['class_weight'] or 'unweighted'}" for head, choice in choices.items()
        ),
        flush=True,
    )


def keep_fine_tuning_if_better(
    model: ArtNet, network: keras.Model, val_data, source: Source, workdir: Workdir, start_score: float, start_weights
) -> bool:
    """After fine-tuning from the probe: keep it only if it raised the heads' mean validation balanced accuracy
    (the measure the probe was chosen by; the loss falls as the heads sharpen towards the majority), else put the
    probe's weights back. Records both scores in the workdir's probe.json; returns whether it was kept."""
    end_score = mean_balanced_accuracy(network, val_data, source, model.heads)
    kept = end_score > start_score
    if not kept:
        model.set_weights(start_weights)
    verdict = "kept" if kept else "undone: the probe it started from was better"
    print(
        f"fine-tuning {verdict} (mean validation balanced accuracy {100 * start_score:.1f} % at the start, "
        f"{100 * end_score:.1f} % after)",
        flush=True,
    )
    record = json.loads(workdir.probe_choices.read_text())
    record["fine_tune"] = {
        "kept": kept,
        "validation_mean_balanced_accuracy_start": start_score,
        "validation_mean_balanced_accuracy_end": end_score,
    }
    workdir.probe_choices.write_text(json.dumps(record, indent=2))
    return kept


def fit_from_cache(model: ArtNet, config: TrainConfig, sources: dict, tables: dict, workdir: Workdir) -> None:
    """Both phases on cached features instead of images: the same layers, losses and weights, a fraction of the cost.

    Heads: on the frozen backbone's pooled features (seconds per epoch). Fine-tuning from `unfreeze`: the
    frozen front of the backbone ran once per view into the cache (the input of `unfreeze`), and only the
    unfrozen tail runs per step. The training graph reuses the ArtNet's own layers, so what it learns is the
    model's. This is exact because the front is frozen, BatchNormalization included (inference mode either way);
    the one difference from image training is that augmentation is a fixed set of `feature_views` views.
    """
    from artnet.training.feature_cache import POOLED as POOLED_FEATURES
    from artnet.training.feature_cache import FeatureSpec, cached_layers

    spec = FeatureSpec(
        backbone=config.backbone,
        weights=config.backbone_weights,
        image_size=model.image_size,
        views=config.data.feature_views,
        augment=config.data.augment,
        framing=model.framing,
    )

    def targets(source, weight_tables, views):
        ys, ws = {}, {}
        for head in model.heads:
            values = source.labels[head]
            table = weight_tables[head] if weight_tables else np.ones(len(labels.VOCABULARIES[head]), np.float32)
            ys[head] = np.tile(np.clip(values, 0, None), views)
            ws[head] = np.tile(pipeline.sample_weights(values, table), views)
        if model.year_head:  # as in pipeline.make_dataset: balanced in training, 1 per known year in validation
            from artnet.models.year import normalised_years, year_sample_weights

            ys[labels.YEAR] = np.tile(normalised_years(source.years)[0], views)
            ws[labels.YEAR] = np.tile(year_sample_weights(source.years, balance=weight_tables is not None), views)
        return ys, ws

    def dataset(features: list, source, weight_tables, training):
        """`features`: one (views, n, ...) array per network input."""
        views = features[0].shape[0]
        x = tuple(array.reshape((-1, *array.shape[2:])) for array in features)
        x = x if len(x) > 1 else x[0]
        y, w = targets(source, weight_tables, views)
        data = tf.data.Dataset.from_tensor_slices((x, y, w))
        if training:
            data = data.shuffle(views * len(source), seed=config.seed, reshuffle_each_iteration=True)
        as_float = functools.partial(tf.nest.map_structure, lambda a: tf.cast(a, tf.float32))
        data = data.batch(config.data.batch_size).map(lambda a, b, c: (as_float(a), b, c))
        if training and config.data.augment.mixup:  # blends of cached features: manifold MixUp
            alpha = config.data.augment.mixup
            data = data.map(lambda a, b, c: pipeline.mix_batch(a, b, c, alpha), num_parallel_calls=tf.data.AUTOTUNE)
        return data.prefetch(tf.data.AUTOTUNE)

    def fit(network, layer_names: tuple, phase, first_epoch, last_epoch, learning_rate):
        def features(split: str, views: int) -> list:
            specs = [dataclasses.replace(spec, layer=name, views=views) for name in layer_names]
            return cached_layers(sources[split], specs)  # missing layers: one backbone pass for all of them

        train_data = dataset(features("train", spec.views), sources["train"], tables, True)
        val_data = dataset(features("validation", 1), sources["validation"], None, False)
        network = weighted(network, config, model.tasks)
        steps = len(train_data) * (last_epoch - first_epoch)
        compile_model(network, config, learning_rate, steps)
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
        print(
            f"phase {phase} from the feature cache ({' + '.join(layer_names)}, {spec.views} view(s)): "
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
            keep_fine_tuning_if_better(
                model, network, val_data, sources["validation"], workdir, start_score, start_weights
            )

    # With style layers the networks take their cached statistics as a second input, normalised and joined to
    # the pooled features by the model's own layers. They must lie below the unfrozen part: frozen, so cacheable.
    style_inputs, style_layer = [], ()
    if model.style_layers:
        from artnet.models.artnet import FEATURES, STYLE, STYLE_NORM
        from artnet.training.feature_cache import style_layer_spec

        if not heads_only(config):  # refused before any training, not after the heads phase
            names = [layer.name for layer in leaf_layers(model.backbone)]
            unfrozen = set(names[names.index(config.unfreeze) :]) if config.unfreeze in names else set(names)
            if set(model.style_layers) & unfrozen:
                raise ValueError(
                    f"style_layers {sorted(set(model.style_layers) & unfrozen)} lie in the unfrozen part "
                    f"(from {config.unfreeze!r}), so their statistics cannot come from the feature cache: "
                    "unfreeze later, use earlier style layers, or train on images (data.feature_views=0)"
                )
        style_layer = (style_layer_spec(model.style_layers),)
        style_inputs = [keras.Input((model.get_layer(STYLE).output.shape[-1],), name="style_statistics")]

    def on_top(pooled):
        features = pooled
        if style_inputs:
            style = model.get_layer(STYLE_NORM)(style_inputs[0])
            features = model.get_layer(FEATURES)([pooled, style])
        dropped = model.get_layer("dropout")(features)
        return {task: model.get_layer(task)(dropped) for task in model.tasks}

    set_trainable(model, "heads", config)
    width = model.get_layer(POOLED).output.shape[-1]
    pooled_input = keras.Input((width,), name="pooled_features")
    if config.heads_from == "probe":  # LP-FT: the heads start as the linear probe, fitted on the same features
        heads_from_probe(model, config, sources, workdir)
    elif config.head_epochs:
        heads_network = keras.Model([pooled_input, *style_inputs], on_top(pooled_input), name="heads_on_cache")
        last = min(config.head_epochs, config.epochs)
        fit(heads_network, (POOLED_FEATURES, *style_layer), "heads", 0, last, config.learning_rate)
    if heads_only(config):
        return
    set_trainable(model, "fine_tune", config)
    backbone = model.backbone
    cut = cut_layer(backbone, config.unfreeze)
    tail = keras.Model(backbone.get_layer(cut).output, backbone.output, name="unfrozen_tail")
    cut_input = keras.Input(tuple(backbone.get_layer(cut).output.shape[1:]), name="cached_features")
    tail_outputs = on_top(model.get_layer(POOLED)(tail(cut_input)))
    tail_network = keras.Model([cut_input, *style_inputs], tail_outputs, name="tail_on_cache")
    layers = (cut, *style_layer)
    fit(tail_network, layers, "fine_tune", config.head_epochs, config.epochs, config.fine_tune_learning_rate)


# --- the run ---------------------------------------------------------------------------------------------


def train(
    config: TrainConfig,
    workdir: str | Path,
    sources: dict[str, Source] | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
    strategy: tf.distribute.Strategy | None = None,
) -> ArtNet:
    """Train `config` in `workdir` (resuming whatever is there) and return the final model (see the top).

    `sources` (train / validation / test) defaults to the config's data; `callbacks` run after artnet's own
    (progress UIs, tests);
    `strategy` defaults to `make_strategy(config.strategy)`, which must then run before any other TF work.
    """
    workdir = workdir if isinstance(workdir, Workdir) else Workdir(workdir)
    workdir.root.mkdir(parents=True, exist_ok=True)
    config.validate()
    strategy = strategy or make_strategy(config.strategy)
    refuse_unsupported(strategy, config)
    from artnet.training.loop import is_chief

    chief = is_chief(strategy)  # only the chief writes the workdir (every worker reads it)
    keras.utils.set_random_seed(config.seed)
    precision = set_precision(config.precision)
    if chief:
        workdir.config.write_text(json.dumps(config.to_dict(), indent=2))

    sources = sources or load_sources(config)
    heads = config.heads
    tables = pipeline.head_weight_tables(sources["train"].labels, heads, config.class_weight_power)
    if chief:
        write_label_counts(workdir, sources["train"])

    replicas = strategy.num_replicas_in_sync
    global_batch = config.data.batch_size * replicas
    with strategy.scope():
        model = ArtNet(
            backbone=config.backbone,
            heads=heads,
            image_size=config.image_size,
            dropout=config.dropout,
            backbone_weights=config.backbone_weights,
            year_head=config.year_head,
            style_layers=config.style_layers,
            framing=config.data.framing,
        )
    started = time.monotonic()
    summary = {"replicas": replicas, "global_batch": global_batch, "precision": precision}
    if config.data.feature_views and config.backbone_weights:
        fit_from_cache(model, config, sources, tables, workdir)
        summary["feature_views"] = config.data.feature_views
        return finish(model, workdir, started, summary)
    size = model.image_size
    train_ds = pipeline.make_dataset(
        sources["train"],
        heads,
        size,
        global_batch,
        training=True,
        weight_tables=tables,
        augment=config.data.augment,
        cache=config.data.cache,
        shuffle_buffer=config.data.shuffle_buffer,
        seed=config.seed,
        drop_remainder=replicas > 1,
        year=config.year_head,
        framing=model.framing,
    )
    # Validation weighs every known label 1: its loss and accuracy are the plain ones. Across replicas, artnet's
    # loop drops the last partial batch (a replica must never get an empty one).
    custom_loop = uses_loop(config, strategy)
    val_ds = pipeline.make_dataset(
        sources["validation"],
        heads,
        size,
        global_batch,
        training=False,
        cache=config.data.cache,
        year=config.year_head,
        drop_remainder=custom_loop and replicas > 1,
        framing=model.framing,
    )
    batches = -(-len(sources["train"]) // global_batch) if replicas == 1 else len(sources["train"]) // global_batch
    steps = config.steps_per_epoch or max(1, batches)
    if config.steps_per_epoch:  # a capped epoch: draw from an endless stream, validate on as many batches
        train_ds = train_ds.repeat()
        val_ds = val_ds.take(max(1, config.steps_per_epoch))

    head_epochs = min(config.head_epochs, config.epochs) if config.backbone_weights else 0
    plan = [("heads", 0, head_epochs, config.learning_rate)]
    plan.append(("fine_tune", head_epochs, config.epochs, config.fine_tune_learning_rate))
    for phase, first_epoch, last_epoch, learning_rate in plan:
        done_marker = workdir.phase_done(phase)
        # heads_from=probe: the heads phase is the probe, fitted on cached frozen features however many epochs it
        # was given; its done marker keeps it, so a resumed run does not fit it again.
        probe_phase = phase == "heads" and config.heads_from == "probe"
        if last_epoch <= first_epoch and not probe_phase:
            continue
        if done_marker.is_file():  # finished in an earlier run: take its weights and move on
            model.load_weights(str(done_marker))
            continue
        if probe_phase:
            heads_from_probe(model, config, sources, workdir)
            model.save_weights(str(done_marker))
            continue
        # Fine-tuning from the probe must earn its keep on the whole validation split (`keep_fine_tuning_if_better`)
        keep_start = phase == "fine_tune" and config.heads_from == "probe"
        if keep_start:
            score_data = pipeline.make_dataset(
                sources["validation"], heads, size, global_batch, training=False, framing=model.framing
            )
            start_weights = model.get_weights()
            start_score = mean_balanced_accuracy(model, score_data, sources["validation"], heads)
        print(
            f"phase {phase}: epochs {first_epoch + 1}-{last_epoch}, global batch {global_batch} "
            f"on {replicas} replica(s), precision {precision}, loop {'artnet' if custom_loop else 'keras fit'}",
            flush=True,
        )
        if custom_loop:
            _fit_phase_with_loop(
                model,
                config,
                strategy,
                train_ds,
                val_ds,
                workdir,
                phase,
                steps,
                learning_rate,
                first_epoch,
                last_epoch,
                callbacks,
            )
        else:
            check_backup(workdir.backup(phase))
            with strategy.scope():
                set_trainable(model, phase, config)
                trainer = weighted(model, config, model.tasks)
                compile_model(trainer, config, learning_rate, steps * (last_epoch - first_epoch))
                if trainer is not model:  # built before fit (BackupAndRestore insists), after compile (its trackers)
                    trainer(keras.ops.zeros((1, *model.input_shape[1:])))
            trainer.fit(
                train_ds,
                validation_data=val_ds,
                epochs=last_epoch,
                initial_epoch=first_epoch,
                steps_per_epoch=config.steps_per_epoch,
                callbacks=_callbacks(workdir, phase, config) + list(callbacks or []),
                shuffle=False,  # the pipeline shuffles
                verbose=2,
            )
        if keep_start:
            keep_fine_tuning_if_better(
                model, model, score_data, sources["validation"], workdir, start_score, start_weights
            )
        if chief:  # keras fit never trains under multi_worker: there every run is the chief
            model.save_weights(str(done_marker))
    return finish(model, workdir, started, summary, write=chief)


def _fit_phase_with_loop(
    model, config, strategy, train_ds, val_ds, workdir, phase, steps, learning_rate, first_epoch, last_epoch, callbacks
) -> None:
    """One phase through `artnet.training.loop`: the config's loss weighting as a `MultiTaskModel` (`fixed` too, so
    every
    strategy takes the same step), compiled like the fit path, its DWA update and any callbacks fed the logs."""
    from artnet.models.weighting import MultiTaskModel, _DwaUpdate
    from artnet.training.loop import fit_with_loop

    with strategy.scope():
        set_trainable(model, phase, config)
        trainer = MultiTaskModel(model, strategy=config.loss_weighting, heads=model.tasks, seed=config.seed)
        compile_model(trainer, config, learning_rate, steps * (last_epoch - first_epoch))
        trainer(keras.ops.zeros((1, *model.input_shape[1:])))
    epoch_callbacks = [_DwaUpdate(trainer)] if config.loss_weighting == "dwa" else []
    fit_with_loop(
        trainer,
        strategy,
        train_ds,
        val_ds,
        first_epoch=first_epoch,
        last_epoch=last_epoch,
        steps_per_epoch=steps,
        workdir=workdir,
        phase=phase,
        early_stopping_patience=config.early_stopping_patience,
        backup_every_steps=config.backup_every_steps,
        callbacks=epoch_callbacks + list(callbacks or []),
    )


def finish(model: ArtNet, workdir: Workdir, started: float, summary: dict, write: bool = True) -> ArtNet:
    """Save the final model and the run's summary (wall time, size, hardware) into the workdir (`write`: the chief
    of a multi-worker job; the other workers only return the model)."""
    if not write:
        return model
    model.save(str(workdir.model))
    seconds = {"seconds": round(time.monotonic() - started, 1), "parameters": int(model.count_params())}
    workdir.train_summary.write_text(json.dumps({**seconds, **summary}))
    return model
