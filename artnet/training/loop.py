"""A training loop for every `tf.distribute` strategy, MultiWorkerMirroredStrategy included.

Keras 3.15's `fit()` cannot train under MultiWorkerMirroredStrategy (keras-team/keras#20585, open upstream), but
everything it would call can: this loop runs the trainer's own `train_step` / `test_step` (the
`artnet.models.weighting.MultiTaskModel` of the config's loss weighting, `fixed` included) in `strategy.run` over a
distributed dataset. So the losses, the masked labels and class weights (sample weights), the loss-weighting
strategies, mixed precision (the optimizer's loss scaling) and the logged names are those of the `fit()` path.

Per phase (heads, fine_tune), for each epoch: reset the metrics, run the steps, reduce the metrics over the
replicas (the mean of the replicas' values: each holds its share of the global batch), validate the same way,
then checkpoint and log. Chief and workers:

- **Checkpoints** (`tf.train.CheckpointManager` of the trainer, its optimizer, the epoch and step reached, and the
  early-stopping state) are written by every worker, as TensorFlow requires, but only the chief's land in the
  workdir (`<workdir>/checkpoints/<phase>`); the others write to a temporary folder of their own and delete it.
  Every worker restores from the chief's folder, so the workdir must be on storage that all workers see. A
  checkpoint is written at each epoch's end and, with `backup_every_steps`, every that many steps: a job whose
  worker was killed is restarted (all workers, with the same command) and resumes from the last one, skipping the
  batches of the interrupted epoch that were already trained on. A checkpoint is restored only once every tensor
  of it has been read back whole; a bad one is named in one line and the one before it is used (two are kept), or,
  with none left, the phase starts from its beginning.
- **Logs** (`metrics.jsonl`, `metrics.csv`, TensorBoard under `tensorboard/`) and `best.keras` (the best
  validation loss) come from the chief alone; the best weights and `best.keras` are written whole or not at all.
- **Data**: each worker reads its own shard of the training data. The pipelines hold in-memory tensors, not
  files, so the auto-shard policy is DATA (each worker keeps every n-th example of the same shuffled order; with
  one shuffle seed everywhere, a global step sees the same examples as one worker with the global batch).
"""

from __future__ import annotations

import csv
import re
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from artnet.config import TrainConfig
from artnet.data.atomic_files import atomic_path
from artnet.models.weighting import MultiTaskModel, _DwaUpdate
from artnet.training.checked_files import load_weights_checked, warn
from artnet.training.compile import compile_model, set_trainable
from artnet.training.records import JsonLines
from artnet.training.strategy import is_chief, worker_name

AUTO_SHARD_POLICY = tf.data.experimental.AutoShardPolicy.DATA


def fit_phase_with_loop(
    model: keras.Model,
    config: TrainConfig,
    strategy: tf.distribute.Strategy,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset,
    workdir,
    *,
    phase: str,
    first_epoch: int,
    last_epoch: int,
    learning_rate: float,
    steps_per_epoch: int,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> None:
    """One phase of `train()` through this loop: the config's loss weighting as a `MultiTaskModel` (`fixed` too, so
    every strategy takes the same step), compiled like the fit path, its DWA update and any callbacks fed the logs."""
    with strategy.scope():
        set_trainable(model, phase, config)
        trainer = MultiTaskModel(model, strategy=config.loss_weighting, heads=model.tasks, seed=config.seed)
        compile_model(trainer, config, learning_rate, steps_per_epoch * (last_epoch - first_epoch))
        trainer(keras.ops.zeros((1, *model.input_shape[1:])))
    epoch_callbacks = [_DwaUpdate(trainer)] if config.loss_weighting == "dwa" else []
    fit_with_loop(
        trainer,
        strategy,
        train_data,
        validation_data,
        first_epoch=first_epoch,
        last_epoch=last_epoch,
        steps_per_epoch=steps_per_epoch,
        workdir=workdir,
        phase=phase,
        early_stopping_patience=config.early_stopping_patience,
        backup_every_steps=config.backup_every_steps,
        callbacks=epoch_callbacks + list(callbacks or []),
    )


def fit_with_loop(
    trainer,
    strategy: tf.distribute.Strategy,
    train_data: tf.data.Dataset,
    validation_data: tf.data.Dataset | None,
    *,
    first_epoch: int,
    last_epoch: int,
    steps_per_epoch: int,
    workdir,
    phase: str,
    early_stopping_patience: int = 0,
    backup_every_steps: int | None = None,
    callbacks: list[keras.callbacks.Callback] | None = None,
) -> dict:
    """Train the compiled `trainer` (a `MultiTaskModel`, built under `strategy.scope()`) for epochs
    `first_epoch`..`last_epoch - 1` of `phase`, resuming from the phase's last checkpoint (see the top).

    `workdir` is an `artnet.workdir.Workdir` that every worker can read; only the chief writes to it.
    `callbacks` get `on_epoch_end(epoch, logs)` with the reduced logs (every worker: they must agree, e.g. DWA's
    weight update). Returns {"epochs": epochs trained in this call, "best_val_loss", "stopped_early"}.
    """
    state = PhaseState(trainer, strategy, workdir, phase, first_epoch)
    logger = None
    if state.chief:
        logger = LoopLogger(workdir.metrics_jsonl, workdir.metrics_csv, _tensorboard_dir(workdir), phase)
    best = BestWeights(trainer.network, workdir, phase, state.chief)
    steps = ReplicaSteps(trainer, strategy)
    train_iterable = distribute(train_data, strategy)
    validation_iterable = distribute(validation_data, strategy) if validation_data is not None else None

    trained, stopped = 0, False
    try:
        epoch = int(state.epoch.numpy())
        while epoch < last_epoch:
            logs = _train_epoch(steps, train_iterable, state, steps_per_epoch, backup_every_steps)
            if validation_iterable is not None:
                logs.update(_validate(steps, validation_iterable))
            for callback in callbacks or []:
                callback.on_epoch_end(epoch, logs)
            if not all(np.isfinite(value) for value in logs.values()):
                raise FloatingPointError(f"phase {phase}, epoch {epoch + 1}: a non-finite loss or metric: {logs}")
            if state.improved(logs.get("val_loss", logs.get("loss"))):
                best.keep()
            epoch += 1
            trained += 1
            state.end_epoch(epoch)
            if logger is not None:
                logger.log(epoch - 1, logs)
            if early_stopping_patience and int(state.wait.numpy()) >= early_stopping_patience:
                stopped = True
                break
        if early_stopping_patience:  # keep the best epoch's weights, as EarlyStopping(restore_best_weights) does
            best.restore()
    finally:
        state.discard_own_copy()
    return {"epochs": trained, "best_val_loss": float(state.best.numpy()), "stopped_early": stopped}


class PhaseState:
    """What a phase resumes from: the trainer, its optimizer, the epoch and step reached, and the early-stopping
    state (best loss, epochs without improvement), in a `tf.train.CheckpointManager` (see the top for who writes
    where). Restored from the chief's latest checkpoint when there is one."""

    def __init__(self, trainer, strategy: tf.distribute.Strategy, workdir, phase: str, first_epoch: int):
        self.chief = is_chief(strategy)
        shared_dir = Path(workdir.root) / "checkpoints" / phase
        own = shared_dir if self.chief else Path(tempfile.mkdtemp(prefix=f"artnet-{worker_name(strategy)}-ckpt-"))
        self.own_dir = own
        if not trainer.optimizer.built:
            with strategy.scope():
                trainer.optimizer.build(trainer.trainable_variables)  # its slots exist before a restore fills them
        # Plain (not mirrored) variables: the same on every worker because every worker runs the same loop.
        self.epoch = tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="loop_epoch")
        self.step = tf.Variable(0, dtype=tf.int64, trainable=False, name="loop_step")
        self.best = tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="loop_best_val_loss")
        self.wait = tf.Variable(0, dtype=tf.int64, trainable=False, name="loop_wait")
        # The checkpoint's keys (epoch, step, best, wait) are what existing checkpoints hold: renaming them would
        # leave a resumed run's state behind.
        variables = {"epoch": self.epoch, "step": self.step, "best": self.best, "wait": self.wait}
        checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer, **variables)
        self.manager = tf.train.CheckpointManager(checkpoint, str(own), max_to_keep=2)
        latest = readable_checkpoint(shared_dir)
        if latest:
            checkpoint.restore(latest).expect_partial()
            print(
                f"[{worker_name(strategy)}] phase {phase}: resumed from {latest} "
                f"(epoch {int(self.epoch.numpy()) + 1}, step {int(self.step.numpy())})",
                flush=True,
            )

    def save(self) -> None:
        self.manager.save()  # every worker: saving is collective; only the chief's lands in the workdir

    def improved(self, monitored: float | None) -> bool:
        """Whether `monitored` beats the best so far; counts the epochs without improvement."""
        if monitored is not None and monitored < float(self.best.numpy()):
            self.best.assign(monitored)
            self.wait.assign(0)
            return True
        self.wait.assign_add(1)
        return False

    def end_epoch(self, epoch: int) -> None:
        """`epoch` epochs done: the next one starts at its first step, from this checkpoint if killed."""
        self.epoch.assign(epoch)
        self.step.assign(0)
        self.save()

    def discard_own_copy(self) -> None:
        if not self.chief:
            shutil.rmtree(self.own_dir, ignore_errors=True)


def checkpoints_newest_first(folder: Path) -> list[str]:
    """The checkpoints in `folder`, newest first: those its `checkpoint` index lists (in the order they were
    written), then any other `ckpt-N` there by number (an index that is missing or unreadable hides none)."""
    if not folder.is_dir():
        return []
    state = tf.train.get_checkpoint_state(str(folder))
    listed = [str(Path(path)) for path in reversed(state.all_model_checkpoint_paths)] if state else []

    def number(path: Path) -> int:
        match = re.fullmatch(r"ckpt-([0-9]+)", path.name)
        return int(match.group(1)) if match else -1

    named = {Path(path).name for path in listed}
    others = sorted((path.with_suffix("") for path in folder.glob("ckpt-*.index")), key=number, reverse=True)
    return listed + [str(path) for path in others if path.name not in named]


def checkpoint_problem(prefix: str) -> str | None:
    """None when every tensor of the checkpoint `prefix` reads back whole, else what is wrong with it."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        for name in reader.get_variable_to_shape_map():
            reader.get_tensor(name)
    except (tf.errors.OpError, ValueError, OSError, IndexError, RuntimeError) as error:  # a cut file: IndexError
        return " ".join(f"{type(error).__name__}: {error}".split())[:300]
    return None


def readable_checkpoint(folder: Path) -> str | None:
    """The newest checkpoint in `folder` that reads back whole (each bad one named in one line), or None."""
    for prefix in checkpoints_newest_first(Path(folder)):
        problem = checkpoint_problem(prefix)
        if problem is None:
            return prefix
        warn(f"checkpoint {prefix} is unreadable ({problem}); trying the one before it")
    if Path(folder).is_dir() and any(Path(folder).glob("ckpt-*")):
        warn(f"no readable checkpoint in {folder}: this phase starts again from its first epoch")
    return None


class BestWeights:
    """The best epoch's weights: kept in memory for early stopping and, by the chief, written to the workdir
    (`best_<phase>.weights.h5`, which a restarted job restores from, and `best.keras`)."""

    def __init__(self, network: keras.Model, workdir, phase: str, chief: bool):
        self.network, self.chief, self.workdir = network, chief, workdir
        self.file = Path(workdir.root) / f"best_{phase}.weights.h5"
        self.weights = None

    def keep(self) -> None:
        self.weights = self.network.get_weights()
        if self.chief:
            with atomic_path(self.file) as partial:
                self.network.save_weights(str(partial))
            with atomic_path(self.workdir.best_model) as partial:
                self.network.save(str(partial))

    def restore(self) -> None:
        if self.weights is not None:
            self.network.set_weights(self.weights)
        elif self.file.is_file():  # the best epoch came before a restart
            load_weights_checked(self.network, self.file, "the last epoch's weights are kept", delete=self.chief)


class ReplicaSteps:
    """The trainer's own steps run on every replica (`strategy.run`) as graphs, and their logs reduced over the
    replicas (the mean of the replicas' values: each holds its share of the global batch)."""

    def __init__(self, trainer, strategy: tf.distribute.Strategy):
        self.trainer, self.strategy = trainer, strategy

    @tf.function
    def train(self, iterator):
        return self.strategy.run(self.trainer.train_step, args=(next(iterator),))

    @tf.function
    def skip(self, iterator):
        next(iterator)  # a batch already trained on before the interruption

    @tf.function
    def test(self, batch):
        return self.strategy.run(self.trainer.test_step, args=(batch,))

    @tf.function
    def reset(self):
        self.strategy.run(lambda: [metric.reset_state() for metric in self.trainer.metrics])

    def reduced(self, per_replica: dict) -> dict:
        return {
            name: float(self.strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))
            for name, value in per_replica.items()
        }


def _train_epoch(steps: ReplicaSteps, train_iterable, state: PhaseState, steps_per_epoch: int, backup_every_steps):
    """One epoch's training steps, from the step reached (the batches before it skipped), saving every
    `backup_every_steps`; returns the reduced logs."""
    steps.reset()
    iterator = iter(train_iterable)
    done = int(state.step.numpy())
    for _ in range(done):
        steps.skip(iterator)
    outputs = None
    for step in range(done, steps_per_epoch):
        outputs = steps.train(iterator)
        state.step.assign(step + 1)
        if backup_every_steps and (step + 1) % backup_every_steps == 0 and step + 1 < steps_per_epoch:
            state.save()
    return steps.reduced(outputs) if outputs is not None else {}


def _validate(steps: ReplicaSteps, validation_iterable) -> dict:
    steps.reset()
    results = None
    for batch in validation_iterable:
        results = steps.test(batch)
    return {f"val_{name}": value for name, value in steps.reduced(results or {}).items()}


def distribute(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """`dataset` (batched by the GLOBAL batch size) split over the strategy's replicas and workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = AUTO_SHARD_POLICY
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


class LoopLogger:
    """The chief's per-epoch records: a JSON line and a CSV row (the keys of the `fit()` path's logs), and
    TensorBoard scalars when the chief writes them."""

    def __init__(self, jsonl: Path, csv_path: Path, tensorboard: Path | None, phase: str):
        self.json_lines = JsonLines(jsonl, phase)  # the fit path's own JSON-lines record, written the same way
        self.csv_path = Path(csv_path)
        self.writer = tf.summary.create_file_writer(str(tensorboard / phase)) if tensorboard else None

    def log(self, epoch: int, logs: dict) -> None:
        self.json_lines.on_epoch_end(epoch, logs)
        row = {"epoch": epoch, **{key: float(value) for key, value in logs.items()}}
        new_file = not self.csv_path.is_file() or self.csv_path.stat().st_size == 0
        with self.csv_path.open("a", newline="") as out:
            writer = csv.DictWriter(out, fieldnames=list(row))
            if new_file:
                writer.writeheader()
            writer.writerow(row)
        if self.writer is not None:
            with self.writer.as_default():
                for key, value in logs.items():
                    tf.summary.scalar(key, float(value), step=epoch + 1)
            self.writer.flush()


def _tensorboard_dir(workdir) -> Path | None:
    return Path(workdir.tensorboard) if getattr(workdir, "tensorboard", None) else None
