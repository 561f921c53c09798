"""Joint training of ArtNet's heads: `train()`, which reads as the sequence of a run's phases.

A run sets up its strategy, precision and seed, loads its sources, builds the model, then fits either on cached
features (`artnet.training.cache_fit`) or on images, phase by phase (heads, then fine-tuning), each phase through
Keras' fit or artnet's own loop (`artnet.training.loop`), and ends by saving the model and its summary.

What lands in the workdir (names in `artnet.workdir.Workdir`): the resolved config, the train-split label counts
(majority baselines, model card), one metrics row / JSON line per epoch and TensorBoard logs, BackupAndRestore
state (two copies: a killed run resumes where it stopped), `best.keras` (the lowest validation loss of the whole
run, both phases, across resumes) and `model.keras` (the last epoch's weights, or, with early stopping, its
phase's best). Each is written whole or not at all, and what a rerun reads back is checked first: a bad file is
named in one line and recomputed or done without (`artnet.training.checked_files`).
"""

from __future__ import annotations

import dataclasses
import json
import time
from pathlib import Path
from typing import NamedTuple

import keras
import tensorflow as tf

from artnet.config import TrainConfig
from artnet.data import pipeline
from artnet.data.atomic_files import atomic_path, write_atomically
from artnet.data.sources import Source, load_sources
from artnet.models.artnet import ArtNet
from artnet.training.cache_fit import fit_from_cache
from artnet.training.checked_files import load_weights_checked
from artnet.training.compile import compile_model, set_trainable, weighted
from artnet.training.loop import fit_phase_with_loop
from artnet.training.lpft import heads_from_probe, keep_fine_tuning_if_better, mean_balanced_accuracy
from artnet.training.records import finish, fit_callbacks, tidy_workdir, write_label_counts
from artnet.training.strategy import is_chief, make_strategy, refuse_unsupported, set_precision, uses_loop
from artnet.workdir import Workdir


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
    chief = is_chief(strategy)  # only the chief writes the workdir (every worker reads it)
    if chief:
        tidy_workdir(workdir)
    precision = begin(config, workdir, chief)
    sources = sources or load_sources(config)
    tables = pipeline.head_weight_tables(sources["train"].labels, config.heads, config.class_weight_power)
    if chief:
        write_label_counts(workdir, sources["train"])
    model = build_model(config, strategy)
    started = time.monotonic()
    replicas = strategy.num_replicas_in_sync
    summary = {"replicas": replicas, "global_batch": config.data.batch_size * replicas, "precision": precision}
    if config.data.feature_views and config.backbone_weights:
        fit_from_cache(model, config, sources, tables, workdir)
        summary["feature_views"] = config.data.feature_views
        return finish(model, workdir, started, summary)
    data = image_data(config, strategy, sources, tables, model)
    run = ImageRun(config, workdir, strategy, chief, precision, sources, model, list(callbacks or []), data)
    for phase in phase_plan(config):
        run_phase(run, phase)
    return finish(model, workdir, started, summary, write=chief)


def begin(config: TrainConfig, workdir: Workdir, chief: bool) -> str:
    """Seed, set the precision policy (before any model is built) and record the config; returns the policy."""
    keras.utils.set_random_seed(config.seed)
    precision = set_precision(config.precision)
    if chief:
        write_atomically(workdir.config, json.dumps(config.to_dict(), indent=2).encode())
    return precision


def build_model(config: TrainConfig, strategy: tf.distribute.Strategy) -> ArtNet:
    with strategy.scope():
        return ArtNet(
            backbone=config.backbone,
            heads=config.heads,
            image_size=config.image_size,
            dropout=config.dropout,
            backbone_weights=config.backbone_weights,
            year_head=config.year_head,
            style_layers=config.style_layers,
            framing=config.data.framing,
        )


@dataclasses.dataclass
class ImageData:
    """The image pipelines of a run, batched by the global batch, and how many training steps make an epoch."""

    train: tf.data.Dataset
    validation: tf.data.Dataset
    steps: int
    global_batch: int
    custom_loop: bool  # artnet's own loop (`uses_loop`), not Keras' fit


def image_data(
    config: TrainConfig, strategy: tf.distribute.Strategy, sources: dict[str, Source], tables: dict, model: ArtNet
) -> ImageData:
    replicas = strategy.num_replicas_in_sync
    global_batch = config.data.batch_size * replicas
    size, heads = model.image_size, config.heads
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
    return ImageData(train_ds, val_ds, steps, global_batch, custom_loop)


class Phase(NamedTuple):
    name: str  # heads or fine_tune
    first_epoch: int
    last_epoch: int  # epochs first_epoch..last_epoch - 1
    learning_rate: float


def phase_plan(config: TrainConfig) -> list[Phase]:
    """The heads on a frozen backbone for `head_epochs` (with pretrained weights; without them, none), then
    fine-tuning for the remaining epochs."""
    head_epochs = min(config.head_epochs, config.epochs) if config.backbone_weights else 0
    return [
        Phase("heads", 0, head_epochs, config.learning_rate),
        Phase("fine_tune", head_epochs, config.epochs, config.fine_tune_learning_rate),
    ]


@dataclasses.dataclass
class ImageRun:
    """What the phases of a run on images share."""

    config: TrainConfig
    workdir: Workdir
    strategy: tf.distribute.Strategy
    chief: bool
    precision: str
    sources: dict[str, Source]
    model: ArtNet
    callbacks: list[keras.callbacks.Callback]
    data: ImageData


def run_phase(run: ImageRun, phase: Phase) -> None:
    """One phase on images, unless an earlier run finished it (its done marker holds its weights)."""
    config, model, workdir = run.config, run.model, run.workdir
    done_marker = workdir.phase_done(phase.name)
    # heads_from=probe: the heads phase is the probe, fitted on cached frozen features however many epochs it
    # was given; its done marker keeps it, so a resumed run does not fit it again.
    probe_phase = phase.name == "heads" and config.heads_from == "probe"
    if phase.last_epoch <= phase.first_epoch and not probe_phase:
        return
    if done_marker.is_file():  # finished in an earlier run: take its weights and move on
        again = "the phase runs again (from its resume state: a finished phase trains no epoch twice)"
        consequence = again if not probe_phase else "the probe is fitted again"
        if load_weights_checked(model, done_marker, consequence, delete=run.chief):
            return
    if probe_phase:
        heads_from_probe(model, config, run.sources, workdir)
        save_done_marker(model, done_marker)
        return
    # Fine-tuning from the probe must earn its keep on the whole validation split (`keep_fine_tuning_if_better`)
    keep_start = phase.name == "fine_tune" and config.heads_from == "probe"
    if keep_start:
        score_data = pipeline.make_dataset(
            run.sources["validation"],
            config.heads,
            model.image_size,
            run.data.global_batch,
            training=False,
            framing=model.framing,
        )
        start_weights = model.get_weights()
        start_score = mean_balanced_accuracy(model, score_data, run.sources["validation"], config.heads)
    replicas, loop = run.strategy.num_replicas_in_sync, "artnet" if run.data.custom_loop else "keras fit"
    print(
        f"phase {phase.name}: epochs {phase.first_epoch + 1}-{phase.last_epoch}, global batch {run.data.global_batch} "
        f"on {replicas} replica(s), precision {run.precision}, loop {loop}",
        flush=True,
    )
    if run.data.custom_loop:
        fit_phase_with_loop(
            model,
            config,
            run.strategy,
            run.data.train,
            run.data.validation,
            workdir,
            phase=phase.name,
            first_epoch=phase.first_epoch,
            last_epoch=phase.last_epoch,
            learning_rate=phase.learning_rate,
            steps_per_epoch=run.data.steps,
            callbacks=run.callbacks,
        )
    else:
        fit_phase_with_keras(run, phase)
    if keep_start:
        validation = run.sources["validation"]
        keep_fine_tuning_if_better(model, model, score_data, validation, workdir, start_score, start_weights)
    if run.chief:  # keras fit never trains under multi_worker: there every run is the chief
        save_done_marker(model, done_marker)


def save_done_marker(model: ArtNet, path: Path) -> None:
    """The weights a finished phase ends with: what a rerun takes instead of running the phase again."""
    with atomic_path(path) as partial:
        model.save_weights(str(partial))


def fit_phase_with_keras(run: ImageRun, phase: Phase) -> None:
    """One phase through Keras' fit: resumable (BackupAndRestore), the config's loss weighting wrapped around the
    model, artnet's callbacks and then the caller's."""
    config, model, workdir = run.config, run.model, run.workdir
    with run.strategy.scope():
        set_trainable(model, phase.name, config)
        trainer = weighted(model, config, model.tasks)
        compile_model(trainer, config, phase.learning_rate, run.data.steps * (phase.last_epoch - phase.first_epoch))
        if trainer is not model:  # built before fit (BackupAndRestore insists), after compile (its trackers)
            trainer(keras.ops.zeros((1, *model.input_shape[1:])))
    trainer.fit(
        run.data.train,
        validation_data=run.data.validation,
        epochs=phase.last_epoch,
        initial_epoch=phase.first_epoch,
        steps_per_epoch=config.steps_per_epoch,
        callbacks=fit_callbacks(workdir, phase.name, config) + run.callbacks,
        shuffle=False,  # the pipeline shuffles
        verbose=2,
    )
