"""Strategy facts: which `tf.distribute` strategy and precision a run trains under, and what follows from them.

Created before any other TensorFlow work (multi-worker collectives must be set up at program start), so these
come first in a run and depend on nothing else of training: the strategy (and its cluster), whether this process
is the chief that writes the workdir, whether the run takes artnet's own loop, and the combinations refused
before any data is loaded.
"""

from __future__ import annotations

import os

import keras
import tensorflow as tf

from artnet.config import TrainConfig
from artnet.training.errors import TrainingError


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


def refuse_unsupported(strategy: tf.distribute.Strategy, config: TrainConfig | None = None) -> None:
    """Stop, before any data is loaded, on a combination that cannot train, saying what to do instead."""
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
    return config.loop == "custom" or (config.loop == "auto" and is_multi_worker(strategy))


def set_precision(name: str) -> str:
    """Set Keras' global dtype policy before any model is built; returns the policy's name."""
    if name == "auto":
        name = "mixed_float16" if tf.config.list_physical_devices("GPU") else "float32"
    if name not in ("float32", "mixed_float16", "mixed_bfloat16"):
        raise ValueError(f"unknown precision {name!r}: auto, float32, mixed_float16 or mixed_bfloat16")
    keras.mixed_precision.set_global_policy(name)
    return name
