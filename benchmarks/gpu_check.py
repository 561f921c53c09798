"""The first GPU hour, prepared: what only a GPU can tell, measured in one command of under 10 minutes.

    .venv/bin/python benchmarks/prepare_gpu_data.py                 # once, here: data/gpu_check (<= 50 MiB)
    python benchmarks/gpu_check.py --out OUT [--data data/gpu_check] [--budget-s 570]
    .venv/bin/python benchmarks/gpu_check.py --smoke --out /tmp/gpu-check-smoke   # the same code paths, CPU, ~1 min

Writes `gpu_check.json` and `gpu_check.md` into `--out` after every measurement, so a run stopped by its budget
(or killed) leaves what it had. Sections, in order (each checks the time left before it starts a measurement):

1. `environment`: Python, TensorFlow / Keras, the GPUs TensorFlow sees, `nvidia-smi`, CPU cores.
2. `step`: NASNetLarge (331 px) with the three heads, one training step on a synthetic batch already on the
   device (`train_on_batch`, Adam), images/s at batch 32 and 64 under float32, mixed_float16 and mixed_bfloat16,
   without and with XLA (`jit_compile`), peak GPU memory (`tf.config.experimental.get_memory_info`, reset per
   setting). Warm-up steps (the first one traces and compiles) are excluded from the timing. An out-of-memory
   is recorded as `oom`, not raised. Settings run XLA-off first (the float32 baseline, then bf16, fp16), then
   XLA-on; what the budget leaves out is listed as `skipped` with its reason.
3. `pipeline`: artnet's tf.data training pipeline (`make_dataset`, augmentation, 331 px) from the prepared
   JPEGs on this machine's CPU cores, images/s, against the fastest step: does the GPU starve? (the ratio)
4. `mirrored`: `tf.distribute.MirroredStrategy` over the GPUs present (on a CPU: two logical CPU devices), global
   batch = per-replica batch x replicas, through `fit` (the strategy splits each batch), against one device.
5. `finetune`: EfficientNet-Lite0 with its offline ImageNet weights, every layer trainable, on the prepared
   painter-split subset of the WikiArt sample, as many epochs as fit in `--finetune-s`; validation balanced
   accuracy per head (unknown labels masked) against a linear probe (scikit-learn logistic regression on the
   frozen pooled features of the same network before fine-tuning) on the same split.

No TensorFlow (the lent accelerator machines have none): the JSON and Markdown say what was found (Python, GPU,
torch / jax versions), one line is printed, and the exit code is 3. Exit codes: 0 done (budget skips included),
1 a section or a measurement failed (its traceback or message is in the JSON; an out-of-memory is a result, not a
failure), 3 no TensorFlow / Keras, 4 stopped by the budget's watchdog in the middle of a measurement. Nothing here
imports TensorFlow before that check.
"""

from __future__ import annotations

import argparse
import datetime
import gc
import importlib.metadata
import importlib.util
import json
import os
import platform
import re
import resource
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import warnings
from pathlib import Path

EXIT_OK, EXIT_SECTION_FAILED, EXIT_NO_TENSORFLOW, EXIT_WATCHDOG = 0, 1, 3, 4
SCHEMA = 1
ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = ROOT / "data" / "gpu_check"
SECTIONS = ("step", "pipeline", "mirrored", "finetune")
# Each section's share of the budget; time a section leaves unused flows to the later ones (see `Budget`).
SHARES = {"step": 0.30, "pipeline": 0.04, "mirrored": 0.10, "finetune": 0.56}
MARGIN_S = 5.0  # kept back at the end for the last write
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
PACKAGES = ("tensorflow", "tensorflow-cpu", "keras", "keras-cv", "jax", "jaxlib", "torch", "numpy", "scikit-learn")

# What a run measures: the GPU scale, and `--smoke`, the same code paths on a CPU in about a minute.
PROFILES = {
    "gpu": {
        "budget_s": 570.0,
        "step_backbone": "nasnet_large",
        "step_size": 331,
        "batches": (32, 64),
        "step_grid": None,  # every batch x precision x XLA setting, XLA off first
        "warmup_steps": 3,
        "timed_steps": 10,
        "pipeline_size": 331,
        "pipeline_batch": 32,
        "pipeline_s": 15.0,
        "mirrored_batch": 32,
        "finetune_backbone": "efficientnet_lite0",
        "finetune_weights": "imagenet",
        "finetune_size": 224,
        "finetune_batch": 64,
        "finetune_s": 300.0,
        "max_epochs": 1000,
        "probe_c": (0.001, 0.01, 0.1),
        "first_of_kind_s": 20.0,  # a setting of a kind not yet timed starts only with this much time left
    },
    "smoke": {
        "budget_s": 300.0,
        "step_backbone": "tiny",
        "step_size": 32,
        "batches": (2, 4),
        # Each precision once, each XLA flag and each batch size at least once: the code paths, not the grid.
        "step_grid": (
            ("float32", False, 2),
            ("float32", False, 4),
            ("mixed_float16", False, 2),
            ("mixed_bfloat16", True, 2),
        ),
        "warmup_steps": 1,
        "timed_steps": 2,
        "pipeline_size": 331,
        "pipeline_batch": 4,
        "pipeline_s": 1.0,
        "mirrored_batch": 2,
        "finetune_backbone": "tiny",
        "finetune_weights": None,
        "finetune_size": 32,
        "finetune_batch": 4,
        "finetune_s": 60.0,
        "max_epochs": 2,
        "probe_c": (1.0,),
        "first_of_kind_s": 0.0,
    },
}


# ------------------------------------------------------------------------------------------------ report, budget


class Report:
    """The run's results, written as JSON + Markdown after every change (under a lock: the watchdog writes too)."""

    def __init__(self, out: Path, header: dict):
        self.out = Path(out)
        self.out.mkdir(parents=True, exist_ok=True)
        self.lock = threading.RLock()
        self.data = {"schema": SCHEMA, **header, "status": "running", "sections": {}}

    def section(self, name: str) -> dict:
        with self.lock:
            return self.data["sections"].setdefault(name, {"status": "running"})

    def update(self, target: dict, **values) -> None:
        with self.lock:
            target.update(values)
            self.write()

    def write(self) -> None:
        with self.lock:
            self.data["elapsed_s"] = round(time.monotonic() - self.data["_started"], 1)
            public = {k: v for k, v in self.data.items() if not k.startswith("_")}
            _atomic_write(self.out / "gpu_check.json", json.dumps(public, indent=2, default=str) + "\n")
            _atomic_write(self.out / "gpu_check.md", markdown(public))


def _atomic_write(path: Path, text: str) -> None:
    scratch = path.with_name(f".{path.name}.tmp")
    scratch.write_text(text)
    scratch.replace(path)


class Budget:
    """Seconds left in the run, and in a section: a section may use its share plus whatever earlier ones left."""

    def __init__(self, total_s: float, selected: tuple[str, ...], start: float):
        self.start = start
        self.total = total_s
        self.selected = selected

    def left(self) -> float:
        return self.total - MARGIN_S - (time.monotonic() - self.start)

    def section_left(self, name: str) -> float:
        later = self.selected[self.selected.index(name) + 1 :]
        reserved = sum(SHARES[section] for section in later) * self.total
        return self.left() - reserved


def start_watchdog(report: Report, total_s: float, started: float) -> threading.Timer:
    """At the budget, stop the process whatever it is doing (an XLA compile cannot be interrupted), after writing
    what it has: every finished measurement is already on disk."""

    def stop():
        if report.lock.acquire(timeout=10):
            report.data["status"] = "stopped by the budget's watchdog during a measurement"
            report.write()
        print(f"gpu_check: the {total_s:g} s budget ran out during a measurement; results so far in {report.out}")
        sys.stdout.flush()
        os._exit(EXIT_WATCHDOG)

    timer = threading.Timer(max(0.0, total_s - (time.monotonic() - started)), stop)
    timer.daemon = True
    timer.start()
    return timer


# ---------------------------------------------------------------------------------------------------- environment


def _run(command: list[str], timeout: float = 30.0) -> str | None:
    if shutil.which(command[0]) is None and not Path(command[0]).is_file():
        return None
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as error:
        return f"failed: {error}"
    return (done.stdout + done.stderr).strip()


def basic_environment() -> dict:
    """What can be read without TensorFlow: the interpreter, the cores, nvidia-smi, installed package versions."""
    versions = {}
    for name in PACKAGES:
        try:
            versions[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            versions[name] = None
    smi = _run(["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"])
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cores = os.cpu_count()
    return {
        "python": sys.version.split()[0],
        "executable": sys.executable,
        "platform": platform.platform(),
        "cpu_cores": cores,
        "nvidia_smi_gpus": smi.splitlines() if smi else None,
        "packages": versions,
    }


def tensorflow_problem() -> str | None:
    """Why TensorFlow + Keras cannot run here, or None. Imports TensorFlow (the caller uses it next)."""
    missing = [name for name in ("tensorflow", "keras") if importlib.util.find_spec(name) is None]
    if missing:
        return f"{' and '.join(missing)} not installed"
    try:
        import keras  # noqa: F401
        import tensorflow  # noqa: F401
    except Exception as error:  # noqa: BLE001 (a broken install raises anything)
        return f"TensorFlow / Keras do not import: {type(error).__name__}: {error}"
    return None


def accelerator_probe() -> dict:
    """What else could drive the accelerator, each asked in a subprocess (a hang or crash stays there)."""
    probes = {
        "torch": "import torch; print(torch.__version__, torch.version.cuda, torch.cuda.is_available(), "
        "torch.cuda.get_device_name(0) if torch.cuda.is_available() else '')",
        "jax": "import jax; print(jax.__version__, jax.devices())",
    }
    found = {}
    for name, code in probes.items():
        if importlib.util.find_spec(name) is None:
            found[name] = None
            continue
        found[name] = _run([sys.executable, "-c", code], timeout=90.0)
    smi = _run(["nvidia-smi"])
    found["nvidia_smi"] = smi.splitlines()[:20] if smi else None
    return found


def report_no_tensorflow(report: Report, problem: str) -> int:
    with report.lock:
        report.data["status"] = "no_tensorflow"
        report.data["blocker"] = (
            f"{problem} in {sys.executable} (Python {sys.version.split()[0]}): nothing was measured. Every section "
            "needs TensorFlow 2 + Keras 3 (the tf.data pipeline, the NASNetLarge step, MirroredStrategy). See "
            "benchmarks/README.md, 'The first GPU hour', for the options."
        )
        report.data["found"] = accelerator_probe()
        report.write()
    print(f"gpu_check: no TensorFlow here ({problem}); nothing measured; wrote {report.out / 'gpu_check.json'}")
    return EXIT_NO_TENSORFLOW


def tensorflow_environment(tf, keras) -> dict:
    info = {"tensorflow": tf.__version__, "keras": keras.__version__, "keras_backend": keras.backend.backend()}
    build = tf.sysconfig.get_build_info()
    info["tf_cuda"], info["tf_cudnn"] = build.get("cuda_version"), build.get("cudnn_version")
    gpus = []
    for device in tf.config.list_physical_devices("GPU"):
        details = tf.config.experimental.get_device_details(device)
        gpus.append({"name": details.get("device_name"), "compute_capability": details.get("compute_capability")})
    info["gpus"] = gpus
    info["logical_devices"] = [device.name for device in tf.config.list_logical_devices()]
    return info


# ------------------------------------------------------------------------------------------------------ helpers


def is_oom(error: BaseException) -> bool:
    import tensorflow as tf

    text = f"{type(error).__name__} {error}"
    return isinstance(error, tf.errors.ResourceExhaustedError) or bool(
        re.search(r"out of memory|\bOOM\b|ResourceExhausted|RESOURCE_EXHAUSTED", text, re.IGNORECASE)
    )


def one_line(error: BaseException) -> str:
    text = " ".join(str(error).split())
    return f"{type(error).__name__}: {text[:300]}"


class Memory:
    """Peak memory of a measurement: the GPU allocator's peak where there is a GPU, else the process's peak RSS."""

    def __init__(self, tf, device: str | None):
        self.tf, self.device = tf, device
        self.source = (
            f"tf.config.experimental.get_memory_info({device!r})['peak'], reset per setting"
            if device
            else "the process's peak RSS so far (no GPU; not per setting)"
        )

    def reset(self) -> None:
        if self.device:
            self.tf.config.experimental.reset_memory_stats(self.device)

    def peak_mib(self) -> float:
        if self.device:
            return round(self.tf.config.experimental.get_memory_info(self.device)["peak"] / 2**20, 1)
        return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def release(keras) -> None:
    keras.backend.clear_session()
    gc.collect()
    keras.mixed_precision.set_global_policy("float32")


def build_model(keras, backbone: str, size: int, weights, precision: str):
    from artnet import labels
    from artnet.models.artnet import ArtNet

    keras.mixed_precision.set_global_policy(precision)
    return ArtNet(backbone=backbone, heads=labels.HEADS, image_size=size, backbone_weights=weights)


def compile_model(keras, model, xla, learning_rate: float = 1e-4) -> None:
    from artnet import labels
    from artnet.models.losses import head_loss

    losses = {head: head_loss(head, len(labels.VOCABULARIES[head])) for head in labels.HEADS}
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=losses, jit_compile=xla)


# ----------------------------------------------------------------------------------------------------- sections


def section_step(ctx) -> None:
    """NASNetLarge three-head training steps over batch x precision x XLA, synthetic batches on the device."""
    tf, keras, p, report = ctx["tf"], ctx["keras"], ctx["profile"], ctx["report"]
    from artnet import labels

    section = report.section("step")
    device = ctx["device"]
    memory = Memory(tf, ctx["gpu"])
    report.update(
        section,
        backbone=p["step_backbone"],
        image_size=p["step_size"],
        optimizer="Adam(1e-4)",
        warmup_steps=p["warmup_steps"],
        timed_steps=p["timed_steps"],
        device=device,
        memory_source=memory.source,
        settings=[],
    )
    durations: dict[bool, float] = {}  # the longest setting seen, per XLA flag: the estimate for the next
    model, built_for = None, None
    for precision, xla, batch in ctx["step_settings"]:
        row = {"batch": batch, "precision": precision, "xla": xla}
        left = ctx["budget"].section_left("step")
        needed = durations.get(xla, p["first_of_kind_s"])
        if left < needed or left <= 0:
            row.update(status="skipped", reason=f"budget: ~{needed:.0f} s needed, {max(left, 0):.0f} s left")
            report.update(section, settings=[*section["settings"], row])
            continue
        started = time.monotonic()
        try:
            if model is None or built_for != (precision, xla):  # one model per precision and XLA flag
                model = None
                release(keras)
                model = build_model(keras, p["step_backbone"], p["step_size"], None, precision)
                compile_model(keras, model, xla)
                built_for = (precision, xla)
                row["build_s"] = round(time.monotonic() - started, 2)
            with tf.device(device):
                size = p["step_size"]
                x = tf.random.uniform((batch, size, size, 3), 0.0, 255.0)
                y = {h: tf.random.uniform((batch,), 0, len(labels.VOCABULARIES[h]), tf.int32) for h in labels.HEADS}
            memory.reset()
            first = time.monotonic()
            model.train_on_batch(x, y)  # traces (and with XLA compiles) for this batch shape
            row["first_step_s"] = round(time.monotonic() - first, 2)
            for _ in range(p["warmup_steps"] - 1):
                model.train_on_batch(x, y)
            timed = time.perf_counter()
            for _ in range(p["timed_steps"]):
                logs = model.train_on_batch(x, y, return_dict=True)  # returns numbers: each step is synced
            seconds = time.perf_counter() - timed
            row.update(
                status="ok",
                step_ms=round(1000 * seconds / p["timed_steps"], 2),
                images_per_s=round(batch * p["timed_steps"] / seconds, 1),
                peak_memory_mib=memory.peak_mib(),
                loss=round(float(logs["loss"]), 3),
            )
        except Exception as error:  # noqa: BLE001 (an OOM, or a setting this TF cannot run, is a result)
            row.update(status="oom" if is_oom(error) else "error", reason=one_line(error))
            model = x = y = None
            release(keras)
        row["seconds"] = round(time.monotonic() - started, 2)
        durations[xla] = max(durations.get(xla, 0.0), row["seconds"])
        print(f"step {precision:14s} xla={str(xla):5s} batch {batch:3d}: {_describe_step(row)}", flush=True)
        report.update(section, settings=[*section["settings"], row])
    model = None
    release(keras)
    ok = [row for row in section["settings"] if row["status"] == "ok"]
    report.update(section, status="done" if ok else "no setting ran")


def _describe_step(row: dict) -> str:
    if row["status"] == "ok":
        return f"{row['images_per_s']} images/s, {row['step_ms']} ms/step, peak {row['peak_memory_mib']} MiB"
    return f"{row['status']} ({row.get('reason', '')})"


def best_step(report: Report, **match) -> dict | None:
    """The fastest finished step setting, among those matching `match` (e.g. xla=False, batch=32)."""
    rows = report.data["sections"].get("step", {}).get("settings", [])
    rows = [r for r in rows if r["status"] == "ok" and all(r.get(k) == v for k, v in match.items())]
    return max(rows, key=lambda r: r["images_per_s"], default=None)


def load_prepared(tf, folder: Path, split: str):
    """A split of a folder written by prepare_gpu_data.py as an artnet `Source` (records = JPEG bytes)."""
    import numpy as np
    from prepare_gpu_data import read_labels

    from artnet import labels
    from artnet.data.sources import Source

    rows = read_labels(folder)[split]
    return Source(
        name=f"{folder.name}:{split}",
        images=tf.data.TFRecordDataset(str(folder / f"{split}.tfrecord")),
        labels={h: np.asarray([labels.label_index(h, r[h]) for r in rows], dtype=np.int64) for h in labels.HEADS},
        meta=[{"author": r["author"], "file": r["file"]} for r in rows],
    )


def section_pipeline(ctx) -> None:
    """artnet's tf.data training pipeline to augmented 331 px batches on this machine's cores, vs the step rate."""
    tf, p, report = ctx["tf"], ctx["profile"], ctx["report"]
    from artnet import labels
    from artnet.config import Augment
    from artnet.data.pipeline import head_weight_tables, make_dataset

    section = report.section("pipeline")
    source = load_prepared(tf, ctx["data"], "train")
    batch, size = p["pipeline_batch"], p["pipeline_size"]
    report.update(section, image_size=size, batch=batch, cpu_cores=ctx["cores"], images_in_source=len(source))
    dataset = make_dataset(
        source,
        labels.HEADS,
        size,
        batch,
        training=True,
        weight_tables=head_weight_tables(source.labels, labels.HEADS),
        augment=Augment(),
        drop_remainder=True,
    ).repeat()
    iterator = iter(dataset)
    warm = time.perf_counter()
    for _ in range(2):  # the first batch compiles the XLA warp and fills the shuffle buffer
        next(iterator)
    warmup_s = time.perf_counter() - warm
    limit = min(p["pipeline_s"], ctx["budget"].section_left("pipeline"))
    count, started = 0, time.perf_counter()
    while count == 0 or time.perf_counter() - started < limit:
        images = next(iterator)[0]
        count += int(images.shape[0])
    seconds = time.perf_counter() - started
    rate = count / seconds
    fastest = best_step(report)
    row = {
        "status": "done",
        "warmup_s": round(warmup_s, 2),
        "images": count,
        "seconds": round(seconds, 2),
        "images_per_s": round(rate, 1),
    }
    if fastest:
        ratio = rate / fastest["images_per_s"]
        row.update(
            step_images_per_s=fastest["images_per_s"],
            step_setting=f"{fastest['precision']}, xla={fastest['xla']}, batch {fastest['batch']}",
            ratio=round(ratio, 2),
            starves=bool(ratio < 1.0),
        )
        verdict = "the GPU starves" if ratio < 1 else "the pipeline keeps up"
        print(
            f"pipeline: {rate:.0f} images/s on {ctx['cores']} cores vs the fastest step {fastest['images_per_s']} "
            f"images/s: ratio {ratio:.2f}, {verdict}",
            flush=True,
        )
    else:
        row.update(step_images_per_s=None, ratio=None, starves=None)
        print(f"pipeline: {rate:.0f} images/s on {ctx['cores']} cores (no step rate to compare)", flush=True)
    report.update(section, **row)


def step_timer(keras):
    """A Keras callback that notes the wall time at the end of each training batch, synced on the batch's loss."""

    class StepTimes(keras.callbacks.Callback):
        def __init__(self):
            super().__init__()
            self.times = []

        def on_train_batch_end(self, batch, logs=None):
            if logs and "loss" in logs:
                float(logs["loss"])
            self.times.append(time.perf_counter())

    return StepTimes()


def section_mirrored(ctx) -> None:
    """MirroredStrategy over the devices present: global batch = per-replica batch x replicas, vs one device."""
    tf, keras, p, report = ctx["tf"], ctx["keras"], ctx["profile"], ctx["report"]
    from artnet import labels

    section = report.section("mirrored")
    if ctx["gpu"]:
        strategy = tf.distribute.MirroredStrategy()
    else:
        strategy = tf.distribute.MirroredStrategy([d.name for d in tf.config.list_logical_devices("CPU")])
    replicas = strategy.num_replicas_in_sync
    per_replica = p["mirrored_batch"]
    single = best_step(report, xla=False, batch=per_replica)
    precision = single["precision"] if single else "float32"
    row = {
        "backbone": p["step_backbone"],
        "devices": list(strategy.extended.worker_devices),
        "replicas": replicas,
        "per_replica_batch": per_replica,
        "global_batch": per_replica * replicas,
        "precision": precision,
        "xla": False,
    }
    needed = 1.5 * (single["seconds"] if single else p["first_of_kind_s"])
    left = ctx["budget"].section_left("mirrored")
    if left < needed or left <= 0:
        report.update(section, **row, status="skipped", reason=f"budget: ~{needed:.0f} s needed, {left:.0f} s left")
        return
    report.update(section, **row)
    size, global_batch = p["step_size"], per_replica * replicas
    x = tf.random.uniform((global_batch, size, size, 3), 0.0, 255.0)
    y = {h: tf.random.uniform((global_batch,), 0, len(labels.VOCABULARIES[h]), tf.int32) for h in labels.HEADS}
    options = tf.data.Options()
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.OFF
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat().with_options(options)
    started = time.monotonic()
    try:
        with strategy.scope():
            model = build_model(keras, p["step_backbone"], size, None, precision)
            compile_model(keras, model, False)
        timer = step_timer(keras)
        steps = p["warmup_steps"] + p["timed_steps"]
        model.fit(dataset, epochs=1, steps_per_epoch=steps, callbacks=[timer], verbose=0)
        seconds = timer.times[-1] - timer.times[p["warmup_steps"] - 1]
        rate = global_batch * p["timed_steps"] / seconds
        result = {"status": "done", "step_ms": round(1000 * seconds / p["timed_steps"], 2)}
        result["images_per_s"] = round(rate, 1)
        if single:
            result["single_device_images_per_s"] = single["images_per_s"]
            result["scaling"] = round(rate / (replicas * single["images_per_s"]), 2)
        line = f"{rate:.1f} images/s over {replicas} replicas (global batch {global_batch})"
    except Exception as error:  # noqa: BLE001
        result = {"status": "oom" if is_oom(error) else "error", "reason": one_line(error)}
        line = f"{result['status']} ({result['reason']})"
    model = None
    release(keras)
    result["seconds"] = round(time.monotonic() - started, 2)
    print(f"mirrored: {line}", flush=True)
    report.update(section, **result)


def balanced_accuracy(true, predicted) -> float | None:
    import numpy as np
    from sklearn.metrics import balanced_accuracy_score

    known = true >= 0
    if not known.any():
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # "y_pred contains classes not in y_true": expected on a small split
        return round(float(balanced_accuracy_score(true[known], np.asarray(predicted)[known])), 4)


def linear_probe(train_x, train_labels, val_x, val_labels, cs) -> dict:
    """Per head: standardised features, multinomial logistic regression with balanced class weights, C chosen on
    validation (as the fine-tune's epoch is): {head: {"C", "balanced_accuracy"}}."""
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    scaler = StandardScaler().fit(train_x)
    train_x, val_x = scaler.transform(train_x), scaler.transform(val_x)
    results = {}
    for head, labels_ in train_labels.items():
        known = labels_ >= 0
        if len(np.unique(labels_[known])) < 2:
            results[head] = {"C": None, "balanced_accuracy": None, "reason": "fewer than 2 training classes"}
            continue
        best = None
        for c in cs:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                probe = LogisticRegression(C=c, max_iter=1000, class_weight="balanced")
                probe.fit(train_x[known], labels_[known])
            score = balanced_accuracy(val_labels[head], probe.predict(val_x))
            if best is None or (score or 0) > (best["balanced_accuracy"] or 0):
                best = {"C": c, "balanced_accuracy": score}
        results[head] = best
    return results


def section_finetune(ctx) -> None:
    """Every layer of EfficientNet-Lite0 fine-tuned on the painter split, against a linear probe on its features."""
    tf, keras, p, report = ctx["tf"], ctx["keras"], ctx["profile"], ctx["report"]
    import numpy as np

    from artnet import labels
    from artnet.config import Augment
    from artnet.data.pipeline import head_weight_tables, make_dataset

    section = report.section("finetune")
    train, validation = (load_prepared(tf, ctx["data"], split) for split in ("train", "validation"))
    size, batch = p["finetune_size"], p["finetune_batch"]
    deadline = time.monotonic() + ctx["budget"].section_left("finetune")
    report.update(
        section,
        backbone=p["finetune_backbone"],
        backbone_weights=p["finetune_weights"],
        image_size=size,
        batch=batch,
        optimizer=f"Adam({ctx['learning_rate']:g})",
        xla=ctx["finetune_xla"],
        train_images=len(train),
        train_painters=len(set(train.painters)),
        validation_images=len(validation),
        validation_painters=len(set(validation.painters)),
        painters_shared=len(set(train.painters) & set(validation.painters)),
        epochs=[],
    )
    started = time.monotonic()
    model = build_model(keras, p["finetune_backbone"], size, p["finetune_weights"], "float32")
    for layer in model.layers:
        layer.trainable = True

    def images_only(source):
        return make_dataset(source, labels.HEADS, size, batch, training=False).map(lambda x, y, w: x)

    embed = model.embedding_model()
    train_features = embed.predict(images_only(train), verbose=0)
    val_features = embed.predict(images_only(validation), verbose=0)
    features_s = time.monotonic() - started
    probe = linear_probe(train_features, train.labels, val_features, validation.labels, p["probe_c"])
    probe_mean = _mean([probe[h]["balanced_accuracy"] for h in labels.HEADS])
    report.update(
        section,
        probe=probe,
        probe_mean=probe_mean,
        probe_features=int(train_features.shape[1]),
        probe_s=round(time.monotonic() - started, 2),
        features_s=round(features_s, 2),
    )
    print(f"finetune: linear probe {_scores(probe)} (mean {probe_mean})", flush=True)

    compile_model(keras, model, ctx["finetune_xla"], ctx["learning_rate"])
    train_dataset = make_dataset(
        train,
        labels.HEADS,
        size,
        batch,
        training=True,
        weight_tables=head_weight_tables(train.labels, labels.HEADS),
        augment=Augment(),
        drop_remainder=True,
    )
    val_images = images_only(validation)
    end = min(deadline, time.monotonic() + p["finetune_s"])
    last_epoch_s = 0.0
    for epoch in range(p["max_epochs"]):
        if time.monotonic() + last_epoch_s > end:
            break
        epoch_started = time.monotonic()
        history = model.fit(train_dataset, epochs=epoch + 1, initial_epoch=epoch, verbose=0)
        fit_s = time.monotonic() - epoch_started
        predictions = model.predict(val_images, verbose=0)
        scores = {h: balanced_accuracy(validation.labels[h], np.argmax(predictions[h], axis=-1)) for h in labels.HEADS}
        last_epoch_s = time.monotonic() - epoch_started
        row = {
            "epoch": epoch + 1,
            "fit_s": round(fit_s, 2),
            "seconds": round(last_epoch_s, 2),
            "train_images_per_s": round(len(train) // batch * batch / fit_s, 1),
            "loss": round(float(history.history["loss"][-1]), 4),
            "balanced_accuracy": scores,
            "mean": _mean(list(scores.values())),
        }
        print(f"finetune: epoch {epoch + 1} {row['seconds']} s, {_scores(scores)} (mean {row['mean']})", flush=True)
        report.update(section, epochs=[*section["epochs"], row])
    epochs = section["epochs"]
    if not epochs:
        report.update(section, status="skipped", reason="budget: no time left for one epoch")
        return
    best = max(epochs, key=lambda row: row["mean"] or 0)
    report.update(
        section,
        status="done",
        best_epoch=best["epoch"],
        best=best["balanced_accuracy"],
        best_mean=best["mean"],
        last=epochs[-1]["balanced_accuracy"],
        last_mean=epochs[-1]["mean"],
        finetune_s=round(sum(row["seconds"] for row in epochs), 2),
    )
    model = embed = None
    release(keras)


def _mean(values) -> float | None:
    values = [v for v in values if v is not None]
    return round(sum(values) / len(values), 4) if values else None


def _scores(scores: dict) -> str:
    return ", ".join(f"{head} {(v['balanced_accuracy'] if isinstance(v, dict) else v)}" for head, v in scores.items())


# ----------------------------------------------------------------------------------------------------- markdown


def _cell(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3g}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def _table(header: list[str], rows: list[list]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "| " + " | ".join("---" for _ in header) + " |"]
    return lines + ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]


def markdown(data: dict) -> str:
    """The run as Markdown tables: what a README section or an issue comment can quote."""
    env = data.get("environment", {})
    lines = [
        f"# GPU check{' (smoke)' if data.get('smoke') else ''}: {data.get('status')}",
        "",
        f"`{data.get('command')}`, started {data.get('started')}, {data.get('elapsed_s')} s of a "
        f"{data.get('budget_s')} s budget.",
        "",
    ]
    gpus = env.get("gpus") or env.get("nvidia_smi_gpus") or ["none"]
    lines += _table(
        ["python", "tensorflow", "keras", "GPUs", "CPU cores"],
        [[env.get("python"), env.get("tensorflow"), env.get("keras"), "; ".join(map(str, gpus)), env.get("cpu_cores")]],
    )
    packages = env.get("packages") or {}
    if packages:
        installed = ", ".join(f"{name} {version}" for name, version in packages.items() if version)
        missing = ", ".join(name for name, version in packages.items() if not version)
        lines += ["", f"Installed: {installed or 'none of those asked'}; not installed: {missing or '-'}."]
    if data.get("status") == "no_tensorflow":
        found = data.get("found", {})
        lines += ["", f"**Blocked:** {data.get('blocker')}", ""]
        lines += _table(
            ["found", "what"], [[k, "<br>".join(v) if isinstance(v, list) else v] for k, v in found.items()]
        )
        return "\n".join(lines) + "\n"
    sections = data.get("sections", {})
    step = sections.get("step")
    if step:
        lines += ["", f"## Training step: {step.get('backbone')} at {step.get('image_size')} px, three heads", ""]
        lines += [f"Synthetic batches on {step.get('device')}; peak memory: {step.get('memory_source')}.", ""]
        rows = [
            [
                r["batch"],
                r["precision"],
                "on" if r["xla"] else "off",
                r["status"],
                r.get("images_per_s"),
                r.get("step_ms"),
                r.get("first_step_s"),
                r.get("peak_memory_mib"),
                r.get("reason", ""),
            ]
            for r in step.get("settings", [])
        ]
        header = ["batch", "precision", "XLA", "status", "images/s", "ms/step", "first step s", "peak MiB", "note"]
        lines += _table(header, rows)
    pipeline = sections.get("pipeline")
    if pipeline:
        lines += ["", f"## Input pipeline: tf.data, augmented, {pipeline.get('image_size')} px", ""]
        starves = pipeline.get("starves")
        verdict = "-" if starves is None else ("GPU starves" if starves else "keeps up")
        lines += _table(
            ["CPU cores", "pipeline images/s", "fastest step images/s", "step setting", "ratio", "verdict", "note"],
            [
                [
                    pipeline.get("cpu_cores"),
                    pipeline.get("images_per_s"),
                    pipeline.get("step_images_per_s"),
                    pipeline.get("step_setting"),
                    pipeline.get("ratio"),
                    verdict,
                    pipeline.get("reason", pipeline.get("status")),
                ]
            ],
        )
    mirrored = sections.get("mirrored")
    if mirrored:
        lines += ["", f"## MirroredStrategy: {mirrored.get('backbone')}", ""]
        lines += _table(
            [
                "replicas",
                "per replica",
                "global batch",
                "precision",
                "images/s",
                "one device images/s",
                "scaling",
                "note",
            ],
            [
                [
                    mirrored.get("replicas"),
                    mirrored.get("per_replica_batch"),
                    mirrored.get("global_batch"),
                    mirrored.get("precision"),
                    mirrored.get("images_per_s"),
                    mirrored.get("single_device_images_per_s"),
                    mirrored.get("scaling"),
                    mirrored.get("reason", mirrored.get("status")),
                ]
            ],
        )
    finetune = sections.get("finetune")
    if finetune:
        lines += [
            "",
            f"## Fine-tune vs linear probe: {finetune.get('backbone')} "
            f"({finetune.get('backbone_weights') or 'random'} weights), painter split",
            "",
            f"{finetune.get('train_images')} training images of {finetune.get('train_painters')} painters, "
            f"{finetune.get('validation_images')} validation images of {finetune.get('validation_painters')} "
            f"painters ({finetune.get('painters_shared')} shared); validation balanced accuracy, unknown labels "
            f"masked; {len(finetune.get('epochs', []))} epochs in {finetune.get('finetune_s')} s. Both the probe's C "
            "and the fine-tune's best epoch are chosen on this validation split.",
            "",
        ]
        probe = finetune.get("probe", {})
        best, last = finetune.get("best") or {}, finetune.get("last") or {}
        rows = []
        for head in (*probe, "mean"):
            if head == "mean":
                row = [finetune.get("probe_mean"), "", finetune.get("best_mean"), finetune.get("last_mean")]
            else:
                row = [probe[head].get("balanced_accuracy"), probe[head].get("C"), best.get(head), last.get(head)]
            rows.append([head, *row])
        epoch = finetune.get("best_epoch")
        lines += _table(
            ["head", "linear probe", "probe C", f"fine-tune, best epoch ({epoch})", "fine-tune, last epoch"], rows
        )
        if finetune.get("reason"):
            lines += ["", f"Note: {finetune['reason']}"]
    failed = {name: s for name, s in sections.items() if s.get("status") == "error"}
    for name, s in failed.items():
        lines += ["", f"**{name} failed:** {s.get('reason')}"]
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------------------------------------- main


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, required=True, help="folder for gpu_check.json and gpu_check.md")
    parser.add_argument("--data", type=Path, help=f"prepared subset (default {DEFAULT_DATA}; --smoke: a fake one)")
    parser.add_argument("--smoke", action="store_true", help="the same code paths on a CPU in about a minute")
    parser.add_argument("--budget-s", type=float, help="stop cleanly after this many seconds (default 570; smoke 300)")
    parser.add_argument("--sections", default=",".join(SECTIONS), help="comma-separated subset of %(default)s")
    parser.add_argument("--batches", help="step batch sizes (default 32,64; smoke 2,4)")
    parser.add_argument("--precisions", help=f"step precisions (default {','.join(PRECISIONS)})")
    parser.add_argument("--xla", help="step XLA settings: off, on or off,on (the default)")
    parser.add_argument("--finetune-s", type=float, help="seconds of fine-tuning epochs (default 300; smoke 20)")
    parser.add_argument("--learning-rate", type=float, default=1e-4, help="the fine-tune's Adam learning rate")
    parser.add_argument(
        "--finetune-xla", choices=("auto", "on", "off"), default="auto", help="auto: XLA on a GPU, off on a CPU"
    )
    parser.add_argument("--cpu-replicas", type=int, default=2, help="logical CPU devices for MirroredStrategy")
    args = parser.parse_args(argv)
    sections = {part.strip() for part in args.sections.split(",") if part.strip()}
    if not sections or sections - set(SECTIONS):
        parser.error(f"--sections: choose from {', '.join(SECTIONS)}")
    args.sections = tuple(s for s in SECTIONS if s in sections)
    args.grid_given = bool(args.batches or args.precisions or args.xla)
    precisions = tuple(part.strip() for part in (args.precisions or ",".join(PRECISIONS)).split(",") if part.strip())
    if not precisions or set(precisions) - set(PRECISIONS):
        parser.error(f"--precisions: choose from {', '.join(PRECISIONS)}")
    args.precision_list = tuple(p for p in PRECISIONS if p in precisions)
    xla = {part.strip() for part in (args.xla or "off,on").split(",") if part.strip()}
    if not xla or xla - {"off", "on"}:
        parser.error("--xla: off, on or off,on")
    args.xla_settings = tuple(flag for flag in (False, True) if ("on" if flag else "off") in xla)
    return args


def main(argv: list[str] | None = None) -> int:
    started = time.monotonic()
    args = parse_args(argv)
    profile = dict(PROFILES["smoke" if args.smoke else "gpu"])
    if args.finetune_s is not None:
        profile["finetune_s"] = args.finetune_s
    batches = tuple(int(b) for b in args.batches.split(",")) if args.batches else profile["batches"]
    if profile["step_grid"] and not args.grid_given:
        step_settings = list(profile["step_grid"])
    else:  # XLA off first (no compile to wait for), the float32 baseline first within each
        step_settings = [(p, x, b) for x in args.xla_settings for p in args.precision_list for b in batches]
    budget_s = args.budget_s or profile["budget_s"]
    report = Report(
        args.out,
        {
            "command": " ".join(["gpu_check.py", *(argv if argv is not None else sys.argv[1:])]),
            "started": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds"),
            "smoke": args.smoke,
            "budget_s": budget_s,
            "_started": started,
        },
    )
    report.data["environment"] = basic_environment()
    report.write()
    watchdog = start_watchdog(report, budget_s, started)  # before TensorFlow's import, which can take a while
    problem = tensorflow_problem()
    if problem:
        watchdog.cancel()  # what is left to do is bounded by the probes' timeouts
        return report_no_tensorflow(report, problem)
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:  # before anything initialises TensorFlow's devices: MirroredStrategy gets logical CPUs
        cpus = tf.config.list_physical_devices("CPU")
        tf.config.set_logical_device_configuration(
            cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.cpu_replicas
        )
    import keras

    # Keras' notes on every epoch of a tf.data input of unknown length (the prepared records): noise here.
    warnings.filterwarnings("ignore", message=r".*(ran out of data|`shuffle=True` was passed).*", category=UserWarning)
    keras.utils.set_random_seed(0)
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # prepare_gpu_data, beside this file
    report.data["environment"].update(tensorflow_environment(tf, keras))
    report.write()
    finetune_xla = {"auto": "auto", "on": True, "off": False}[args.finetune_xla]
    ctx = {
        "tf": tf,
        "keras": keras,
        "profile": profile,
        "report": report,
        "budget": Budget(budget_s, args.sections, started),
        "gpu": "GPU:0" if gpus else None,
        "device": "/GPU:0" if gpus else "/CPU:0",
        "cores": report.data["environment"]["cpu_cores"],
        "step_settings": step_settings,
        "learning_rate": args.learning_rate,
        "finetune_xla": finetune_xla,
    }
    scratch = None
    needs_data = {"pipeline", "finetune"} & set(args.sections)
    if args.data:
        ctx["data"] = args.data.resolve()
    elif args.smoke and needs_data:
        from prepare_gpu_data import prepare, write_fake_folder

        scratch = Path(tempfile.mkdtemp(prefix="gpu-check-smoke-"))
        ctx["data"] = scratch / "prepared"
        prepare(write_fake_folder(scratch / "fake"), ctx["data"])
    else:
        ctx["data"] = DEFAULT_DATA
    report.data["data"] = str(ctx["data"]) if needs_data else None
    functions = {
        "step": section_step,
        "pipeline": section_pipeline,
        "mirrored": section_mirrored,
        "finetune": section_finetune,
    }
    failed = False
    for name in args.sections:
        if name in needs_data and not (ctx["data"] / "labels.csv").is_file():
            reason = f"no prepared data at {ctx['data']}: run benchmarks/prepare_gpu_data.py and carry it"
            report.update(report.section(name), status="skipped", reason=reason)
            print(f"{name}: skipped ({reason})", flush=True)
            continue
        if ctx["budget"].section_left(name) <= 0:
            report.update(report.section(name), status="skipped", reason="budget: no time left")
            print(f"{name}: skipped (budget)", flush=True)
            continue
        section_started = time.monotonic()
        try:
            functions[name](ctx)
        except Exception as error:  # noqa: BLE001 (one section's failure must not lose the others' results)
            failed = True
            report.update(
                report.section(name), status="error", reason=one_line(error), traceback=traceback.format_exc()
            )
            print(f"{name}: failed ({one_line(error)})", flush=True)
            release(keras)
        report.update(report.section(name), section_s=round(time.monotonic() - section_started, 1))
    watchdog.cancel()

    def any_status(status: str) -> bool:
        return any(
            s.get("status") == status or any(r.get("status") == status for r in s.get("settings", []))
            for s in report.data["sections"].values()
        )

    failed = failed or any_status("error")  # a measurement that raised (an out-of-memory is `oom`, a result)
    skipped = any_status("skipped")
    with report.lock:
        report.data["status"] = "failed" if failed else ("partial (budget)" if skipped else "complete")
        report.write()
    if scratch is not None:
        shutil.rmtree(scratch, ignore_errors=True)
    print(
        f"gpu_check: {report.data['status']} in {report.data['elapsed_s']} s; wrote {report.out}/gpu_check.json and .md"
    )
    return EXIT_SECTION_FAILED if failed else EXIT_OK


if __name__ == "__main__":
    sys.exit(main())
