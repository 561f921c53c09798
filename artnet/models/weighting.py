"""Multi-task loss weighting: how the heads' losses are combined into the one objective a step minimises.

`MultiTaskModel(network, strategy=...)` wraps a model with dict outputs (ArtNet, or the networks of
`fit_from_cache`) and trains it with its own `train_step`. It is compiled exactly like the model it wraps (the same
`loss={head: Loss}`, `loss_weights={head: float}` and `weighted_metrics={head: [metrics]}` arguments), so
`train.compile_model` works on it unchanged, and its logs keep today's keys (`loss`, `school_loss`,
`school_top1`, ..., `val_*`) plus, per epoch, `weight_<head>` and `objective` (and `pcgrad_conflicts`).

Every strategy acts on the task losses L_t = λ_t · ℓ_t, where ℓ_t is the head's compiled loss (its per-batch mean,
unknown labels masked with sample weight 0, as Keras computes it) and λ_t the config's `loss_weights` (default 1,
which is what the papers and LibMTL use):

- `fixed`: Σ_t L_t, today's compiled weighted sum.
- `uncertainty` (Kendall, Gal & Cipolla 2018): Σ_t exp(-s_t) L_t + s_t, with one trainable float32 log-variance
  s_t per head, initialised at 0 (the classification form; LibMTL's UW is the same objective halved).
- `dwa` (Liu, Johns & Davison 2019, dynamic weight average): w_t = T · softmax_t(r_t / temperature), with
  r_t = L̄_t(e-1) / L̄_t(e-2) from the epoch-mean task losses of the last two epochs; w_t = 1 for the first two
  epochs; temperature 2. The weights change once per epoch (a callback that `fit` adds itself).
- `pcgrad` (Yu et al. 2020, gradient surgery): one gradient per task w.r.t. the shared variables; for each task,
  in random order over the other tasks, the component conflicting with another task's gradient (g_i·g_j < 0) is
  projected away: g_i -= (g_i·g_j / |g_j|²) g_j. The shared update is Σ_i g_i; the head-specific variables take
  their own task's gradient. `pcgrad_conflicts` logs the mean number of conflicting task pairs per step.

What is logged: `loss` (and `val_loss`) is always the fixed sum Σ_t λ_t ℓ_t, whatever the strategy, so that runs
with different strategies, best-model checkpoints and early stopping compare like with like; `objective` is what the
strategy minimised; `weight_<head>` is the epoch-mean multiplier of ℓ_t in the objective (λ_t; λ_t·exp(-s_t);
λ_t·w_t; λ_t for pcgrad).

Distribution and precision: losses come scaled by 1/replicas (as Keras' losses do under `tf.distribute`), and the
objective goes through `optimizer.scale_loss` (a LossScaleOptimizer under `mixed_float16`, which unscales in
`apply` and skips steps with non-finite gradients). PCGrad is exact under MirroredStrategy: the per-task shared
gradients are summed over the replicas before the projection (one all-reduce of T × |shared| values), the same
random order is drawn on every replica (stateless, seeded by the step), and the result is divided by the number of
replicas before the optimizer's own all-reduce. The projection is invariant to the loss scale.

Saving: `save()` saves the wrapped network (so `best.keras` stays an ArtNet file); `save_weights()` /
`load_weights()` (BackupAndRestore) cover the wrapper, i.e. the network plus the strategy's state (s_t, DWA history).
"""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

# Keras' own helpers for the 1/replicas scaling of losses (no public alias in Keras 3.15).
from keras.src.losses.loss import scale_loss_for_distribution, unscale_loss_for_distribution

STRATEGIES = ("fixed", "uncertainty", "dwa", "pcgrad")
DWA_TEMPERATURE = 2.0


def validate_strategy(name: str) -> str:
    if name not in STRATEGIES:
        raise ValueError(f"unknown loss weighting {name!r}: {', '.join(STRATEGIES)}")
    return name


# --- the strategies' arithmetic (pure functions, tested on hand-made cases) -------------------------------


def dwa_weights(previous: np.ndarray, before: np.ndarray, temperature: float = DWA_TEMPERATURE) -> np.ndarray:
    """DWA's weights from the epoch-mean task losses of epochs e-1 (`previous`) and e-2 (`before`)."""
    ratios = np.asarray(previous, np.float64) / np.maximum(np.asarray(before, np.float64), 1e-12)
    logits = ratios / temperature
    exp = np.exp(logits - logits.max())
    return (len(ratios) * exp / exp.sum()).astype(np.float32)


def pcgrad_project(grads: tf.Tensor, order: tf.Tensor | None = None) -> tuple[tf.Tensor, tf.Tensor]:
    """PCGrad on flattened per-task gradients `grads` [T, D] -> (projected [T, D], conflicting pairs).

    `order[i]` is the order (a permutation of 0..T-1) in which task i is projected against the others (default
    0..T-1); task i itself is skipped. Projections are against the others' original gradients, as in the paper
    and LibMTL. The count is of unordered pairs whose original gradients conflict (g_i·g_j < 0).
    """
    grads = tf.convert_to_tensor(grads)
    tasks = grads.shape[0]
    if order is None:
        order = tf.tile(tf.range(tasks)[None], [tasks, 1])
    squared_norms = tf.reduce_sum(tf.square(grads), axis=1)
    tiny = tf.constant(np.finfo(np.float32).tiny, grads.dtype)
    projected = []
    for i in range(tasks):
        g = grads[i]
        for k in range(tasks):
            j = order[i, k]
            other = tf.gather(grads, j)
            dot = tf.reduce_sum(g * other)
            conflict = tf.logical_and(dot < 0, tf.not_equal(j, i))
            g = tf.where(conflict, g - dot / tf.maximum(tf.gather(squared_norms, j), tiny) * other, g)
        projected.append(g)
    dots = tf.matmul(grads, grads, transpose_b=True)
    upper = tf.linalg.band_part(tf.ones_like(dots), 0, -1) - tf.linalg.band_part(tf.ones_like(dots), 0, 0)
    conflicts = tf.reduce_sum(tf.where(dots < 0, upper, tf.zeros_like(upper)))
    return tf.stack(projected), conflicts


# --- the model --------------------------------------------------------------------------------------------


class _DwaUpdate(keras.callbacks.Callback):
    """At each epoch's end, moves DWA's history on by the epoch's mean task losses and sets the next weights."""

    def __init__(self, model: MultiTaskModel):
        super().__init__()
        self._owner = model

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        owner = self._owner
        try:
            losses = np.array([owner.loss_weights[h] * float(logs[f"{h}_loss"]) for h in owner.heads], np.float32)
        except KeyError:
            return  # an epoch without training logs: nothing to learn from
        if not np.all(np.isfinite(losses)):
            return
        history = owner.dwa_history.numpy()
        history = np.stack([losses, history[0]])
        seen = int(owner.dwa_epochs.numpy()) + 1
        owner.dwa_history.assign(history)
        owner.dwa_epochs.assign(seen)
        if seen >= 2:
            owner.dwa_weights.assign(dwa_weights(history[0], history[1], owner.temperature))


class MultiTaskModel(keras.Model):
    """`network` (inputs -> {head: probabilities}) trained with the loss weighting `strategy` (see the top).

    `heads`: the dict keys to train (default `network.heads`, else its output names). `shared_variables_fn`
    (PCGrad): model -> the variables shared by all tasks; default every trainable variable of the network outside
    the layers named after the heads. `seed` draws PCGrad's orders. Build it under the distribution strategy's
    scope, like the network (its variables must be created there).
    """

    def __init__(
        self,
        network: keras.Model,
        strategy: str = "fixed",
        heads=None,
        shared_variables_fn=None,
        temperature: float = DWA_TEMPERATURE,
        seed: int = 0,
        **kwargs,
    ):
        kwargs.setdefault("name", f"{network.name}_{strategy}")
        super().__init__(**kwargs)
        self.network = network
        self.strategy = validate_strategy(strategy)
        heads = heads if heads is not None else getattr(network, "heads", None) or network.output_names
        self.heads = tuple(heads)
        self.shared_variables_fn = shared_variables_fn
        self.temperature = float(temperature)
        self.seed = int(seed)
        self.loss_weights = {h: 1.0 for h in self.heads}
        count = len(self.heads)
        if strategy == "uncertainty":
            self.log_variances = self.add_weight(
                shape=(count,), initializer="zeros", dtype="float32", trainable=True, name="log_variances"
            )
        if strategy == "dwa":
            self.dwa_weights = self.add_weight(
                shape=(count,), initializer="ones", dtype="float32", trainable=False, name="dwa_weights"
            )
            self.dwa_history = self.add_weight(
                shape=(2, count), initializer="ones", dtype="float32", trainable=False, name="dwa_history"
            )
            self.dwa_epochs = self.add_weight(
                shape=(), initializer="zeros", dtype="int64", trainable=False, name="dwa_epochs"
            )
        self._all_metrics = []

    def call(self, inputs, training=False):
        return self.network(inputs, training=training)

    # --- compile: the same arguments as the wrapped model's compile ---

    def compile(self, optimizer="rmsprop", loss=None, loss_weights=None, weighted_metrics=None, metrics=None, **kw):
        if not isinstance(loss, dict) or set(loss) != set(self.heads):
            raise ValueError(f"MultiTaskModel needs loss={{head: Loss}} for exactly the heads {self.heads}")
        self.head_losses = {h: keras.losses.get(loss[h]) for h in self.heads}
        self.loss_weights = {h: float((loss_weights or {}).get(h, 1.0)) for h in self.heads}
        optimizer = keras.optimizers.get(optimizer)
        if self.strategy == "uncertainty" and getattr(optimizer, "weight_decay", None):
            optimizer.exclude_from_weight_decay(var_list=[self.log_variances])
        super().compile(optimizer=optimizer, **kw)

        def renamed(metric, head):
            metric = keras.metrics.get(metric)
            return type(metric).from_config({**metric.get_config(), "name": f"{head}_{metric.name}"})

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.objective_tracker = keras.metrics.Mean(name="objective")
        self.head_loss_trackers = {h: keras.metrics.Mean(name=f"{h}_loss") for h in self.heads}
        self.head_metrics = {
            h: [renamed(m, h) for m in [*(weighted_metrics or {}).get(h, []), *(metrics or {}).get(h, [])]]
            for h in self.heads
        }
        self.weight_trackers = {h: keras.metrics.Mean(name=f"weight_{h}") for h in self.heads}
        self.conflict_tracker = keras.metrics.Mean(name="pcgrad_conflicts") if self.strategy == "pcgrad" else None
        self._eval_metrics = [
            self.loss_tracker,
            *self.head_loss_trackers.values(),
            *[m for h in self.heads for m in self.head_metrics[h]],
        ]
        self._all_metrics = [
            *self._eval_metrics,
            self.objective_tracker,
            *self.weight_trackers.values(),
            *([self.conflict_tracker] if self.conflict_tracker else []),
        ]

    @property
    def metrics(self):
        return list(self._all_metrics)

    def fit(self, *args, callbacks=None, **kwargs):
        callbacks = list(callbacks or [])
        if self.strategy == "dwa":  # first, so that a backup taken at the epoch's end holds the new weights
            callbacks.insert(0, _DwaUpdate(self))
        return super().fit(*args, callbacks=callbacks, **kwargs)

    def save(self, filepath, *args, **kwargs):
        """Saves the wrapped network (the strategy's state is training-only)."""
        return self.network.save(filepath, *args, **kwargs)

    # --- the steps ---

    def _task_losses(self, y, y_pred, sample_weight):
        """[T] task losses λ_t·ℓ_t, scaled by 1/replicas as Keras' losses are."""
        sample_weight = sample_weight or {}
        values = []
        for h in self.heads:
            value = self.head_losses[h](y[h], y_pred[h], sample_weight=sample_weight.get(h))
            values.append(tf.cast(value, tf.float32) * self.loss_weights[h])
        return tf.stack(values)

    def current_weights(self) -> tf.Tensor:
        """[T] multipliers of the task losses λ_t·ℓ_t in the objective (1 for fixed and pcgrad)."""
        if self.strategy == "uncertainty":
            return tf.exp(-tf.convert_to_tensor(self.log_variances))
        if self.strategy == "dwa":
            return tf.convert_to_tensor(self.dwa_weights)
        return tf.ones([len(self.heads)], tf.float32)

    def _objective(self, losses):
        weights = self.current_weights()
        objective = tf.reduce_sum(weights * losses)
        if self.strategy == "uncertainty":
            objective += scale_loss_for_distribution(tf.reduce_sum(tf.convert_to_tensor(self.log_variances)))
        return objective

    def _update_metrics(self, x, y, y_pred, sample_weight, losses):
        sample_weight = sample_weight or {}
        batch = tf.shape(tf.nest.flatten(x)[0])[0]
        unscaled = unscale_loss_for_distribution(losses)
        self.loss_tracker.update_state(tf.reduce_sum(unscaled), sample_weight=batch)
        for t, h in enumerate(self.heads):
            self.head_loss_trackers[h].update_state(unscaled[t] / self.loss_weights[h], sample_weight=batch)
            for metric in self.head_metrics[h]:
                metric.update_state(y[h], y_pred[h], sample_weight=sample_weight.get(h))

    def _shared_variables(self):
        if self.shared_variables_fn is not None:
            return list(self.shared_variables_fn(self))
        own = set()
        for h in self.heads:
            try:
                own.update(id(v) for v in self.network.get_layer(h).trainable_variables)
            except ValueError:
                pass
        return [v for v in self.network.trainable_variables if id(v) not in own]

    def train_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        variables = self.trainable_variables
        with tf.GradientTape(persistent=self.strategy == "pcgrad") as tape:
            y_pred = self(x, training=True)
            losses = self._task_losses(y, y_pred, sample_weight)
            objective = self._objective(losses)
            scaled_losses = [self.optimizer.scale_loss(losses[t]) for t in range(len(self.heads))]
            scaled_objective = self.optimizer.scale_loss(objective)
        if self.strategy == "pcgrad":
            gradients, conflicts = self._pcgrad_gradients(tape, scaled_losses, variables)
            del tape
            self.conflict_tracker.update_state(conflicts)
        else:
            gradients = tape.gradient(scaled_objective, variables)
        self.optimizer.apply(gradients, variables)

        self._update_metrics(x, y, y_pred, sample_weight, losses)
        self.objective_tracker.update_state(unscale_loss_for_distribution(objective))
        weights = self.current_weights()
        for t, h in enumerate(self.heads):
            self.weight_trackers[h].update_state(weights[t] * self.loss_weights[h])
        return {m.name: m.result() for m in self.metrics}

    def _pcgrad_gradients(self, tape, scaled_losses, variables):
        shared_ids = {id(v) for v in self._shared_variables()}
        per_task = [tape.gradient(loss, variables) for loss in scaled_losses]
        shared_index = [k for k, v in enumerate(variables) if id(v) in shared_ids]
        gradients = []
        for k in range(len(variables)):  # head-specific: the sum of the tasks' gradients (only its own is nonzero)
            parts = [g[k] for g in per_task if g[k] is not None]
            gradients.append(tf.add_n([tf.convert_to_tensor(p) for p in parts]) if parts else None)
        if not shared_index:
            return gradients, tf.constant(0.0)

        def flat(grads):
            return tf.concat(
                [
                    tf.reshape(tf.cast(grads[k], tf.float32), [-1])
                    if grads[k] is not None
                    else tf.zeros([int(np.prod(variables[k].shape))], tf.float32)
                    for k in shared_index
                ],
                axis=0,
            )

        matrix = tf.stack([flat(g) for g in per_task])
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        if replicas > 1:  # project the global gradients, identically on every replica
            matrix = tf.distribute.get_replica_context().all_reduce(tf.distribute.ReduceOp.SUM, matrix)
        tasks = len(self.heads)
        seed = tf.stack([tf.constant(self.seed, tf.int64), tf.cast(self.optimizer.iterations, tf.int64)])
        order = tf.argsort(tf.random.stateless_uniform([tasks, tasks], seed=seed), axis=1)
        projected, conflicts = pcgrad_project(matrix, order)
        combined = tf.reduce_sum(projected, axis=0) / float(replicas)
        offset = 0
        for k in shared_index:
            size = int(np.prod(variables[k].shape))
            gradients[k] = tf.cast(tf.reshape(combined[offset : offset + size], variables[k].shape), variables[k].dtype)
            offset += size
        return gradients, conflicts

    def test_step(self, data):
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        y_pred = self(x, training=False)
        losses = self._task_losses(y, y_pred, sample_weight)
        self._update_metrics(x, y, y_pred, sample_weight, losses)
        return {m.name: m.result() for m in self._eval_metrics}


def wrap_for_weighting(network: keras.Model, strategy: str = "fixed", seed: int = 0, **kwargs) -> MultiTaskModel:
    """`MultiTaskModel(network, strategy, seed=seed)`; call under the distribution strategy's scope."""
    return MultiTaskModel(network, strategy=strategy, seed=seed, **kwargs)
