"""How a serving process spends its cores: each forward pass on one thread, as many passes at once as cores.

The demo's parallelism is its concurrent requests, not threads inside one: under load those only fight each
other for the cores. Measured with 20 visitors on 2 cores (benchmarks/README.md, "Demo under load"): OpenBLAS's
threads spin-waiting after the neighbour search, TensorFlow's inter-op pool beside its intra-op one, and two
intra-op threads per forward pass (25.2 ms of CPU per image at batch 8, against 20.6 ms on one thread) all cost
CPU that the requests needed. So `artnet demo` calls `limit_serving_threads` before the model loads, and the
backend runs `forward_lanes()` passes side by side (`artnet.serving.batcher.Batcher`). A user's own settings of
these variables win.
"""

from __future__ import annotations

import logging
import os

import tensorflow as tf
from threadpoolctl import threadpool_limits

from artnet.serving.batcher import CONCURRENCY

SERVING_THREADS = 1
BLAS_VARIABLES = ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS")
LOG = logging.getLogger("artnet.serving.demo")  # the demo's one logger, whichever of its modules logs


def limit_serving_threads() -> dict[str, int]:
    """Before the model loads, in a process that serves the demo: one BLAS thread, and one TensorFlow thread per
    op and per graph (see SERVING_THREADS). Returns what it set; a variable the user set, or a TensorFlow that
    has already run, is left alone (the latter said in the log)."""
    applied = {}
    if not any(variable in os.environ for variable in BLAS_VARIABLES):
        threadpool_limits(limits=SERVING_THREADS, user_api="blas")  # for the life of the process
        applied["blas"] = SERVING_THREADS
    pools = {
        "tf_inter_op": ("TF_NUM_INTEROP_THREADS", tf.config.threading.set_inter_op_parallelism_threads),
        "tf_intra_op": ("TF_NUM_INTRAOP_THREADS", tf.config.threading.set_intra_op_parallelism_threads),
    }
    for name, (variable, set_threads) in pools.items():
        if variable in os.environ:
            continue
        try:
            set_threads(SERVING_THREADS)
            applied[name] = SERVING_THREADS
        except RuntimeError:  # TensorFlow has already run an op in this process: its pools are fixed
            LOG.info("TensorFlow is already initialised: its %s threads stay as they are", name)
    return applied


def forward_lanes() -> int:
    """How many forward passes may run at once: one per core when each pass runs on one thread
    (`limit_serving_threads`), else one (a pass already spreads over the cores), never more than CONCURRENCY."""
    threads = os.environ.get("TF_NUM_INTRAOP_THREADS", "").strip()  # TensorFlow reads it; its API does not say
    if (int(threads) if threads.isdigit() else tf.config.threading.get_intra_op_parallelism_threads()) != 1:
        return 1
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    return max(1, min(cores, CONCURRENCY))
