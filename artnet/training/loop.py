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
  batches of the interrupted epoch that were already trained on.
- **Logs** (`metrics.jsonl`, `metrics.csv`, TensorBoard under `tensorboard/`) and `best.keras` (the best
  validation loss) come from the chief alone.
- **Data**: each worker reads its own shard of the training data. The pipelines hold in-memory tensors, not
  files, so the auto-shard policy is DATA (each worker keeps every n-th example of the same shuffled order; with
  one shuffle seed everywhere, a global step sees the same examples as one worker with the global batch).
"""

from __future__ import annotations

import csv
import shutil
import tempfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

AUTO_SHARD_POLICY = tf.data.experimental.AutoShardPolicy.DATA


def is_multi_worker(strategy: tf.distribute.Strategy) -> bool:
    return isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy)


def is_chief(strategy: tf.distribute.Strategy) -> bool:
    """The worker that writes the workdir: the `chief` task, or worker 0 of a cluster without one (and any
    single-process strategy)."""
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None or not resolver.task_type:
        return True
    if resolver.task_type == "chief":
        return True
    has_chief = "chief" in resolver.cluster_spec().as_dict()
    return resolver.task_type == "worker" and resolver.task_id == 0 and not has_chief


def worker_name(strategy: tf.distribute.Strategy) -> str:
    resolver = getattr(strategy, "cluster_resolver", None)
    if not is_multi_worker(strategy) or resolver is None or not resolver.task_type:
        return "local"
    return f"{resolver.task_type}{resolver.task_id}"


def detached(model: keras.Model) -> keras.Model:
    """A copy of `model` with plain variables, built outside any strategy: what the chief evaluates and exports
    after a multi-worker job, when the other workers have left (the trained model's distributed `predict` would
    wait on them in a collective)."""
    if tf.distribute.has_strategy():
        raise RuntimeError("detached() must run outside any strategy scope (its variables would be distributed)")
    copy = model.__class__.from_config(model.get_config())
    copy.set_weights(model.get_weights())
    return copy


def distribute(dataset: tf.data.Dataset, strategy: tf.distribute.Strategy):
    """`dataset` (batched by the GLOBAL batch size) split over the strategy's replicas and workers."""
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = AUTO_SHARD_POLICY
    return strategy.experimental_distribute_dataset(dataset.with_options(options))


class LoopLogger:
    """The chief's per-epoch records: a JSON line and a CSV row (the keys of the `fit()` path's logs), and
    TensorBoard scalars when the chief writes them."""

    def __init__(self, jsonl: Path, csv_path: Path, tensorboard: Path | None, phase: str):
        from artnet.training.train import JsonLines  # the fit path's own JSON-lines record, written the same way

        self.json_lines = JsonLines(jsonl, phase)
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
    chief = is_chief(strategy)
    shared_dir = Path(workdir.root) / "checkpoints" / phase
    own_dir = shared_dir if chief else Path(tempfile.mkdtemp(prefix=f"artnet-{worker_name(strategy)}-ckpt-"))
    if not trainer.optimizer.built:
        with strategy.scope():
            trainer.optimizer.build(trainer.trainable_variables)  # its slots exist before a restore fills them
    # Plain (not mirrored) variables: the same on every worker because every worker runs the same loop.
    state = {
        "epoch": tf.Variable(first_epoch, dtype=tf.int64, trainable=False, name="loop_epoch"),
        "step": tf.Variable(0, dtype=tf.int64, trainable=False, name="loop_step"),
        "best": tf.Variable(np.inf, dtype=tf.float64, trainable=False, name="loop_best_val_loss"),
        "wait": tf.Variable(0, dtype=tf.int64, trainable=False, name="loop_wait"),
    }
    checkpoint = tf.train.Checkpoint(trainer=trainer, optimizer=trainer.optimizer, **state)
    manager = tf.train.CheckpointManager(checkpoint, str(own_dir), max_to_keep=2)
    latest = tf.train.latest_checkpoint(str(shared_dir))
    if latest:
        checkpoint.restore(latest).expect_partial()
        print(
            f"[{worker_name(strategy)}] phase {phase}: resumed from {latest} "
            f"(epoch {int(state['epoch'].numpy()) + 1}, step {int(state['step'].numpy())})",
            flush=True,
        )
    logger = LoopLogger(workdir.metrics_jsonl, workdir.metrics_csv, _tensorboard_dir(workdir), phase) if chief else None
    best_weights_file = Path(workdir.root) / f"best_{phase}.weights.h5"
    best_weights = None

    train_iterable = distribute(train_data, strategy)
    validation_iterable = distribute(validation_data, strategy) if validation_data is not None else None

    @tf.function
    def train_step(iterator):
        return strategy.run(trainer.train_step, args=(next(iterator),))

    @tf.function
    def skip_step(iterator):
        next(iterator)  # a batch already trained on before the interruption

    @tf.function
    def test_step(batch):
        return strategy.run(trainer.test_step, args=(batch,))

    @tf.function
    def reset():
        strategy.run(lambda: [metric.reset_state() for metric in trainer.metrics])

    def reduced(per_replica: dict) -> dict:
        return {
            name: float(strategy.reduce(tf.distribute.ReduceOp.MEAN, value, axis=None))
            for name, value in per_replica.items()
        }

    trained, stopped = 0, False
    try:
        epoch = int(state["epoch"].numpy())
        while epoch < last_epoch:
            reset()
            iterator = iter(train_iterable)
            done = int(state["step"].numpy())
            for _ in range(done):
                skip_step(iterator)
            outputs = None
            for step in range(done, steps_per_epoch):
                outputs = train_step(iterator)
                state["step"].assign(step + 1)
                if backup_every_steps and (step + 1) % backup_every_steps == 0 and step + 1 < steps_per_epoch:
                    manager.save()
            logs = reduced(outputs) if outputs is not None else {}
            if validation_iterable is not None:
                reset()
                results = None
                for batch in validation_iterable:
                    results = test_step(batch)
                logs.update({f"val_{name}": value for name, value in reduced(results or {}).items()})
            for callback in callbacks or []:
                callback.on_epoch_end(epoch, logs)
            if not all(np.isfinite(value) for value in logs.values()):
                raise FloatingPointError(f"phase {phase}, epoch {epoch + 1}: a non-finite loss or metric: {logs}")
            monitored = logs.get("val_loss", logs.get("loss"))
            improved = monitored is not None and monitored < float(state["best"].numpy())
            if improved:
                state["best"].assign(monitored)
                state["wait"].assign(0)
                best_weights = trainer.network.get_weights()
                if chief:
                    trainer.network.save_weights(str(best_weights_file))
                    trainer.network.save(str(workdir.best_model))
            else:
                state["wait"].assign_add(1)
            epoch += 1
            trained += 1
            state["epoch"].assign(epoch)
            state["step"].assign(0)
            manager.save()  # every worker: saving is collective; only the chief's lands in the workdir
            if logger is not None:
                logger.log(epoch - 1, logs)
            if early_stopping_patience and int(state["wait"].numpy()) >= early_stopping_patience:
                stopped = True
                break
        if early_stopping_patience:  # keep the best epoch's weights, as EarlyStopping(restore_best_weights) does
            if best_weights is not None:
                trainer.network.set_weights(best_weights)
            elif best_weights_file.is_file():  # the best epoch came before a restart
                trainer.network.load_weights(str(best_weights_file))
    finally:
        if not chief:
            shutil.rmtree(own_dir, ignore_errors=True)
    return {"epochs": trained, "best_val_loss": float(state["best"].numpy()), "stopped_early": stopped}


def _tensorboard_dir(workdir) -> Path | None:
    return Path(workdir.tensorboard) if getattr(workdir, "tensorboard", None) else None
