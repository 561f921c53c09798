"""Strategy facts: which `tf.distribute` strategy and precision a run trains under, and what follows from them.

Created before any other TensorFlow work (multi-worker collectives must be set up at program start), so these
come first in a run and depend on nothing else of training: the strategy (and its cluster), whether this process
is the chief that writes the workdir, whether the run takes artnet's own loop, and the combinations refused
before any data is loaded.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading

import keras
import tensorflow as tf

# TensorFlow's multi-worker internals (no public API reaches them; see `_gathering` and `release_cluster`).
from tensorflow.python.distribute import collective_all_reduce_strategy
from tensorflow.python.eager import context

from artnet.config import TrainConfig
from artnet.training.cluster import (
    PEER_TIMEOUT,
    Cluster,
    cluster_from_environment,
    exposure_note,
    missing_peers_message,
)
from artnet.training.errors import TrainingError


def make_strategy(name: str, peer_timeout: float | None = None) -> tf.distribute.Strategy:
    """Create before any other TensorFlow work: multi-worker collectives must be set up at program start.

    `peer_timeout` (multi_worker): seconds to wait for every task of the cluster (default `PEER_TIMEOUT`)."""
    if name == "auto":
        gpus = tf.config.list_physical_devices("GPU")
        return tf.distribute.MirroredStrategy() if len(gpus) > 1 else tf.distribute.get_strategy()
    if name == "mirrored":
        return tf.distribute.MirroredStrategy()
    if name == "multi_worker":
        return multi_worker_strategy(PEER_TIMEOUT if peer_timeout is None else peer_timeout)
    if name == "none":
        return tf.distribute.get_strategy()
    raise ValueError(f"unknown strategy {name!r}: auto, mirrored, multi_worker or none")


def multi_worker_strategy(peer_timeout: float) -> tf.distribute.MultiWorkerMirroredStrategy:
    """MultiWorkerMirroredStrategy over the cluster of the environment, once every task has arrived.

    It waits at most `peer_timeout` seconds for its peers (then TrainingError names those that never answered),
    a SIGTERM stops it at any point, waiting included, and it logs what its TensorFlow server exposes (every
    interface, no authentication: TensorFlow offers no setting for either).
    """
    if not peer_timeout > 0:
        raise ValueError(f"peer timeout must be a positive number of seconds, got {peer_timeout}")
    resolver = multi_worker_resolver()
    cluster = Cluster(
        resolver.cluster_spec().as_dict(),
        resolver.task_type,
        resolver.task_id,
        "TF_CONFIG" if "TF_CONFIG" in os.environ else "Slurm",
    )
    print(exposure_note(cluster, tf.__version__), flush=True)
    print(
        f"[{cluster.task}] waiting up to {peer_timeout:g} s for the cluster's other "
        f"{len(cluster.peers)} task(s): {', '.join(f'{n} ({a})' for n, a in cluster.peers.items()) or 'none'}",
        flush=True,
    )
    with _gathering(peer_timeout):
        try:
            strategy = tf.distribute.MultiWorkerMirroredStrategy(cluster_resolver=resolver)
        except RuntimeError as error:
            if "Timeout waiting for the cluster" not in str(error):
                raise
            raise TrainingError(missing_peers_message(cluster, peer_timeout)) from None
    if threading.current_thread() is threading.main_thread():
        # SIGTERM ends the process, as it does a single-machine run: nothing of TensorFlow's may keep it waiting.
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
    print(f"[{cluster.task}] the cluster is complete: {strategy.num_replicas_in_sync} replica(s)", flush=True)
    return strategy


@contextlib.contextmanager
def _gathering(peer_timeout: float):
    """How TensorFlow 2.21 gathers a cluster, changed for this process so that the wait has a deadline and a
    SIGTERM ends it.

    By default MultiWorkerMirroredStrategy starts TensorFlow's coordination service, whose start-up waits for every
    task without a deadline, inside one native call that holds the interpreter (no Python runs until it returns),
    and which replaces the SIGTERM handler with its preemption notifier (a SIGTERM is logged, not obeyed). Without
    the coordination service the strategy gathers with a dummy all-reduce bounded by its health check's initial
    timeout, raising RuntimeError when it passes; SIGTERM keeps its default action; and dead peers are still
    found, by the strategy's health-check thread (it aborts the collectives, so a worker whose peer died fails
    instead of waiting for ever). Both knobs are private to TensorFlow: checked by tests/test_trust_training.py.
    """
    extended = collective_all_reduce_strategy.CollectiveAllReduceExtended
    before = extended._check_health_initial_timeout
    if context.context().coordination_service is None:  # an empty service type: no coordination service
        context.context().configure_coordination_service(service_type="")
    extended._check_health_initial_timeout = peer_timeout
    try:
        yield
    finally:
        extended._check_health_initial_timeout = before


def release_cluster(strategy: tf.distribute.Strategy) -> None:
    """Stop watching the other workers once the last collective is done: the chief then evaluates and exports
    alone while the others exit, and the health check would take their leaving for a failure (an error logged,
    collectives aborted). The check thread is told to stop, not waited for (it sleeps 30 s between rounds)."""
    extended = getattr(strategy, "extended", None)
    stop = getattr(extended, "_check_health_thread_should_stop", None)
    if stop is not None:
        stop.set()
    if getattr(extended, "_check_health_thread", None) is not None:
        extended._check_health_thread = None  # the strategy's __del__ joins it otherwise


def multi_worker_resolver():
    """The cluster of a multi-worker job: `TF_CONFIG` when set (checked first: a malformed one is a one-line
    ValueError), else Slurm's own variables under `srun` (one task per node, each using all of its node's GPUs),
    else ValueError saying what to set."""
    if cluster_from_environment(os.environ) is not None:
        return tf.distribute.cluster_resolver.TFConfigClusterResolver()
    return tf.distribute.cluster_resolver.SlurmClusterResolver(
        port_base=int(os.environ.get("ARTNET_SLURM_PORT", "2222")),
        gpus_per_node=1,  # with auto_set_gpu=False these only shape the task list: one task per node
        gpus_per_task=1,
        auto_set_gpu=False,
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
