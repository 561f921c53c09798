"""Joint training of ArtNet's heads: strategy, precision, two phases, resumable, logged to a workdir.

What lands in the workdir (names in `artnet.workdir.Workdir`): the resolved config, the train-split label counts
(majority baselines, model card), one metrics row / JSON line per epoch and TensorBoard logs, BackupAndRestore
state (two copies: a killed run resumes where it stopped), `best.keras` (the lowest validation loss of the whole
run, both phases, across resumes) and `model.keras` (the last epoch's weights, or, with early stopping, its
phase's best).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from artnet import labels, pipeline
from artnet.config import TrainConfig
from artnet.models.artnet import ArtNet
from artnet.models.losses import head_loss
from artnet.sources import Source, folder_source, wga_source
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
        if "TF_CONFIG" not in os.environ:
            raise ValueError("strategy multi_worker needs TF_CONFIG describing the cluster and this worker's task")
        return tf.distribute.MultiWorkerMirroredStrategy()  # joins the cluster; fit() refuses it below
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}: auto, mirrored, multi_worker or none")


def refuse_unsupported(strategy: tf.distribute.Strategy) -> None:
    """Stop, before any data is loaded, on a strategy that Keras cannot train with."""
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
        # Measured here with two localhost workers: Keras 3.15's fit() fails inside its own metric building and
        # per-replica reductions under this strategy (open upstream as keras-team/keras#20585). Say so plainly
        # rather than fail deep inside Keras; MirroredStrategy over the GPUs of one machine works.
        raise TrainingError(
            "strategy multi_worker: Keras 3.15's fit() cannot train under MultiWorkerMirroredStrategy "
            "(keras-team/keras#20585, open upstream). Train on one machine with strategy=mirrored (all its GPUs)."
        )


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
    settings = config.data
    if settings.source == "wga":
        return {s: wga_source(settings.wga_config, s, settings.data_dir) for s in ("train", "validation", "test")}
    if settings.source == "folder":
        return {
            s: folder_source(settings.folder, settings.csv or None, split=s, split_by=settings.split_by)
            for s in ("train", "validation", "test")
        }
    raise ValueError(f"unknown data source {settings.source!r}: wga or folder")


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
    heads = model.heads
    model.compile(
        optimizer=make_optimizer(config, learning_rate, steps),
        loss={h: head_loss(h, len(labels.VOCABULARIES[h]), config.label_smoothing) for h in heads},
        loss_weights={h: float(config.loss_weights.get(h, 1.0)) for h in heads},
        # Weighted, so that unknown labels (weight 0) count in no metric.
        weighted_metrics={
            h: [
                keras.metrics.SparseCategoricalAccuracy(name="top1"),
                keras.metrics.SparseTopKCategoricalAccuracy(k=3, name="top3"),
            ]
            for h in heads
        },
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


def leaf_layers(model: keras.Model) -> list[keras.layers.Layer]:
    """Every layer inside `model`, nested models opened, in order. The keras.applications backbones sit inside
    a wrapper model as ONE layer (see `artnet.models.backbones`): `model.layers` alone would never reach their
    BatchNormalization layers or the layer named by `unfreeze`."""
    leaves = []
    for layer in model.layers:
        if isinstance(layer, keras.Model):
            leaves.extend(leaf_layers(layer))
        else:
            leaves.append(layer)
    return leaves


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
    refuse_unsupported(strategy)
    keras.utils.set_random_seed(config.seed)
    precision = set_precision(config.precision)
    workdir.config.write_text(json.dumps(config.to_dict(), indent=2))

    sources = sources or load_sources(config)
    heads = config.heads
    tables = pipeline.head_weight_tables(sources["train"].labels, heads, config.class_weight_power)
    counts = label_counts(sources["train"])
    workdir.label_counts.write_text(
        json.dumps({"train_examples": len(sources["train"]), "counts": counts, "source": sources["train"].name})
    )

    replicas = strategy.num_replicas_in_sync
    global_batch = config.data.batch_size * replicas
    with strategy.scope():
        model = ArtNet(
            backbone=config.backbone,
            heads=heads,
            image_size=config.image_size,
            dropout=config.dropout,
            backbone_weights=config.backbone_weights,
        )
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
        seed=config.seed,
        drop_remainder=replicas > 1,
    )
    # Validation weighs every known label 1: its loss and accuracy are the plain ones.
    val_ds = pipeline.make_dataset(
        sources["validation"], heads, size, global_batch, training=False, cache=config.data.cache
    )
    batches = -(-len(sources["train"]) // global_batch) if replicas == 1 else len(sources["train"]) // global_batch
    steps = config.steps_per_epoch or max(1, batches)
    if config.steps_per_epoch:  # a capped epoch: draw from an endless stream, validate on as many batches
        train_ds = train_ds.repeat()
        val_ds = val_ds.take(max(1, config.steps_per_epoch))

    head_epochs = min(config.head_epochs, config.epochs) if config.backbone_weights else 0
    plan = [("heads", 0, head_epochs, config.learning_rate)]
    plan.append(("fine_tune", head_epochs, config.epochs, config.fine_tune_learning_rate))
    started = time.monotonic()
    for phase, first_epoch, last_epoch, learning_rate in plan:
        done_marker = workdir.phase_done(phase)
        if last_epoch <= first_epoch:
            continue
        if done_marker.is_file():  # finished in an earlier run: take its weights and move on
            model.load_weights(str(done_marker))
            continue
        check_backup(workdir.backup(phase))
        with strategy.scope():
            set_trainable(model, phase, config)
            compile_model(model, config, learning_rate, steps * (last_epoch - first_epoch))
        print(
            f"phase {phase}: epochs {first_epoch + 1}-{last_epoch}, global batch {global_batch} "
            f"on {replicas} replica(s), precision {precision}"
        )
        model.fit(
            train_ds,
            validation_data=val_ds,
            epochs=last_epoch,
            initial_epoch=first_epoch,
            steps_per_epoch=config.steps_per_epoch,
            callbacks=_callbacks(workdir, phase, config) + list(callbacks or []),
            shuffle=False,  # the pipeline shuffles
            verbose=2,
        )
        model.save_weights(str(done_marker))
    model.save(str(workdir.model))
    workdir.train_summary.write_text(
        json.dumps(
            {
                "seconds": round(time.monotonic() - started, 1),
                "parameters": int(model.count_params()),
                "replicas": replicas,
                "global_batch": global_batch,
                "precision": precision,
            }
        )
    )
    return model
