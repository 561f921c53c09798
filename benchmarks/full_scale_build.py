"""Full-scale simulation: the `artist` build through `tfds build` against a stand-in wga.hu, killed and resumed.

    .venv/bin/python benchmarks/full_scale_build.py [--rows 30305] [--latency 0.05] [--faults 0.01] [--out DIR]

The stand-in (artnet.testing.fake_server) answers for the painting rows of the real catalogue
(../shared/wga-sample/data_txt.zip) with synthetic JPEGs of 20-300 KB (noise over a smooth gradient, unique per
path, sized by a seeded draw), `--latency` seconds per response, and one of 500 / 503 / 429 / reset / truncate
queued for a `--faults` share of the images. The catalogue's first `--rows` usable paintings are served (all
30,305 by default; fewer is a reduced-scale run, whose catalogue is then not the pinned export, so the build
runs with ARTNET_WGA_CATALOG_SHA256=any). Images are generated on first request and kept in `<out>/stash`, so a
second run of the benchmark spends no time drawing them.

Three builds, each a separate `tfds build` process with its own data and download folders:
  A. uninterrupted: wall time, images/s, peak RSS (wait4 of the process), disk, TFDS shards;
  B. killed (SIGKILL to its process group) once `--kill-at` of the images are in its mirror;
  B'. B resumed in the same folders.
Then A and B' are compared record by record: the multiset of sha256 of every tf.train.Example (deterministically
serialized), per split. Equal multisets are the same examples, in the same splits, with the same feature bytes.
"""

from __future__ import annotations

import argparse
import collections
import hashlib
import io
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from artnet.data.wga.catalog import parse_catalog, read_catalog_bytes, usable_paintings
from artnet.testing.fake_server import FaultyWgaServer

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT.parent / "shared" / "wga-sample"
FAULTS = [500, 503, 429, "reset", "truncate"]  # retryable: every image must still arrive


def synthetic_jpeg(path: str, bytes_per_pixel: float) -> bytes:
    """A unique JPEG for `path`, of a seeded size between 20 and 300 KB."""
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(path.encode()).digest()[:8], "big"))
    target = int(rng.integers(20_000, 300_001))
    aspect = float(rng.uniform(0.6, 1.6))
    area = target / bytes_per_pixel
    width = max(16, int((area * aspect) ** 0.5))
    height = max(16, int(area / width))
    return _noisy_gradient(rng, width, height)


def _noisy_gradient(rng, width: int, height: int) -> bytes:
    corners = rng.integers(0, 256, (2, 2, 3)).astype(np.float32)
    y = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    x = np.linspace(0, 1, width, dtype=np.float32)[None, :, None]
    top = corners[0, 0] * (1 - x) + corners[0, 1] * x
    bottom = corners[1, 0] * (1 - x) + corners[1, 1] * x
    pixels = top * (1 - y) + bottom * y + rng.normal(0, 24, (height, width, 3)).astype(np.float32)
    out = io.BytesIO()
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(out, format="JPEG", quality=85)
    return out.getvalue()


def calibrate() -> float:
    """Bytes per pixel of the synthetic recipe, so that drawn sizes land near their targets."""
    return len(_noisy_gradient(np.random.default_rng(0), 512, 512)) / (512 * 512)


class SyntheticWga(FaultyWgaServer):
    """The fake server, answering `art/…` paths of the chosen paintings with synthetic JPEGs (others: 404)."""

    def __init__(self, mirror: Path, paths: set[str], stash: Path, **kwargs):
        super().__init__(mirror, **kwargs)
        self.paths, self.stash, self.bytes_per_pixel = paths, stash, calibrate()

    def body(self, path: str) -> bytes | None:
        if path not in self.paths:
            return super().body(path)
        stashed = self.stash / path
        if stashed.is_file():
            return stashed.read_bytes()
        body = synthetic_jpeg(path, self.bytes_per_pixel)
        stashed.parent.mkdir(parents=True, exist_ok=True)
        temporary = stashed.with_suffix(f".{os.getpid()}.{time.monotonic_ns()}.part")
        temporary.write_bytes(body)
        os.replace(temporary, stashed)
        return body


def reduced_catalogue(rows: int, target: Path) -> tuple[set[str], bool]:
    """Write the server's catalogue into `target`; return the image paths served and whether it is the full one."""
    data = read_catalog_bytes(SAMPLE)
    paintings = usable_paintings(parse_catalog(data)[0])
    if rows >= len(paintings):
        shutil.copy(SAMPLE / "data_txt.zip", target / "data_txt.zip")  # the pinned export, byte for byte
        return {row.image_path for row in paintings}, True
    chosen = paintings[:rows]
    last = chosen[-1].catalog_index
    # Data rows are the non-blank lines after the header (catalog_index counts them), cp1252 split on CRLF.
    lines = data.split(b"\r\n")
    header_at = next(i for i, line in enumerate(lines) if line.strip())
    kept, data_rows = [lines[header_at]], 0
    for line in lines[header_at + 1 :]:
        if data_rows > last:
            break
        kept.append(line)
        data_rows += bool(line.strip())
    (target / "catalog.csv").write_bytes(b"\r\n".join(kept) + b"\r\n")
    return {row.image_path for row in chosen}, False


def count_files(folder: Path) -> int:
    return sum(len([n for n in names if n.endswith(".jpg")]) for _, _, names in os.walk(folder))


def disk_bytes(folder: Path) -> int:
    return sum((Path(top) / name).stat().st_size for top, _, names in os.walk(folder) for name in names)


def run_build(name: str, run_dir: Path, env: dict, log: Path, kill_at: int | None = None) -> dict:
    command = [
        str(ROOT / ".venv" / "bin" / "tfds"),
        "build",
        str(ROOT / "datasets" / "wga"),
        "--config",
        "artist",
        "--data_dir",
        str(run_dir / "data"),
        "--download_dir",
        str(run_dir / "downloads"),
    ]
    mirror = run_dir / "downloads" / "wga" / "mirror"
    started = time.monotonic()
    with open(log, "ab") as out:
        process = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    killed = False
    try:
        while True:
            # wait4, not Popen.poll: it reaps the process and returns its own rusage (peak RSS).
            pid, status, usage = os.wait4(process.pid, os.WNOHANG)
            if pid:
                break
            if kill_at is not None and not killed and count_files(mirror) >= kill_at:
                os.killpg(process.pid, signal.SIGKILL)
                killed = True
            time.sleep(1.0)
    except BaseException:
        # The build runs in its own session (so that B's kill reaches all of it): stop it with the benchmark.
        os.killpg(process.pid, signal.SIGKILL)
        raise
    seconds = time.monotonic() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0 and not killed:
        raise SystemExit(f"build {name} failed with exit code {code}; see {log}")
    result = {"name": name, "seconds": round(seconds, 1), "exit_code": code, "peak_rss_mib": usage.ru_maxrss // 1024}
    result["images_in_mirror"] = count_files(mirror)
    if not killed:
        summary = json.loads((run_dir / "downloads" / "wga" / "summary-artist.json").read_text())
        counts = collections.Counter()
        for split in summary["images"].values():
            counts.update(split)
        shards = sorted((run_dir / "data").rglob("*.tfrecord-*"))
        result.update(
            images=dict(counts),
            examples=summary["examples"],
            download=summary["download"],
            failure_reasons=summary["failure_reasons"],
            shards=len(shards),
            dataset_mib=round(sum(s.stat().st_size for s in shards) / 2**20, 1),
            mirror_mib=round(disk_bytes(mirror) / 2**20, 1),
            cache_mib=round(sum(disk_bytes(p) for p in (run_dir / "downloads" / "wga").glob("prepared-*")) / 2**20, 1),
        )
    return result


def record_digests(data_dir: Path) -> dict[str, collections.Counter]:
    """{split: multiset of sha256 of each example (all its features), read straight from the TFRecord shards."""
    import tensorflow as tf

    digests: dict[str, collections.Counter] = collections.defaultdict(collections.Counter)
    for shard in sorted(data_dir.rglob("*.tfrecord-*")):
        split = shard.name.split(".tfrecord")[0].rsplit("-", 1)[1]
        for record in tf.data.TFRecordDataset(str(shard)).as_numpy_iterator():
            # Features is a protobuf map, whose serialized order may differ between two writes of the same
            # example: hash its deterministic serialization instead of the bytes on disk.
            canonical = tf.train.Example.FromString(record).SerializeToString(deterministic=True)
            digests[split][hashlib.sha256(canonical).hexdigest()] += 1
    return dict(digests)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=30_305, help="usable paintings served (30,305 = all)")
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every response")
    parser.add_argument("--faults", type=float, default=0.01, help="share of images with one fault queued")
    parser.add_argument("--kill-at", type=float, default=0.5, help="share of images in the mirror at the kill")
    parser.add_argument("--out", type=Path, default=Path("/tmp/artnet-full-scale"), help="work folder")
    args = parser.parse_args()
    # `timeout` and friends send SIGTERM: unwind through run_build's cleanup rather than die leaving a build behind.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if not (SAMPLE / "data_txt.zip").is_file():
        raise SystemExit(f"needs the real catalogue at {SAMPLE / 'data_txt.zip'}")

    for run in ("A", "B"):
        shutil.rmtree(args.out / run, ignore_errors=True)
    server_mirror = args.out / "server"
    shutil.rmtree(server_mirror, ignore_errors=True)
    server_mirror.mkdir(parents=True)
    paths, full = reduced_catalogue(args.rows, server_mirror)
    print(f"{len(paths):,} paintings served ({'the full pinned catalogue' if full else 'reduced scale'})", flush=True)

    with SyntheticWga(server_mirror, paths, args.out / "stash", latency=args.latency) as server:

        def queue_faults() -> int:
            """The same faults before each build (a fault is consumed by the request that meets it)."""
            chooser = random.Random(14)
            server.faults.clear()
            for path in sorted(paths):
                if chooser.random() < args.faults:
                    server.faults[path] = [chooser.choice(FAULTS)]
            return len(server.faults)

        faults_queued = queue_faults()
        env = {key: value for key, value in os.environ.items() if not key.startswith("ARTNET_WGA_")}
        env.update(ARTNET_WGA_BASE_URL=server.base_url, ARTNET_WGA_MAX_RATE="0", ARTNET_WGA_BACKOFF="0.05")
        env.update(TF_CPP_MIN_LOG_LEVEL="2")
        if not full:
            env["ARTNET_WGA_CATALOG_SHA256"] = "any"
        log = args.out / "builds.log"
        results = [run_build("A: uninterrupted", args.out / "A", env, log)]
        print(json.dumps(results[-1]), flush=True)
        kill_at = int(args.kill_at * len(paths))
        queue_faults()
        results.append(run_build("B: killed", args.out / "B", env, log, kill_at=kill_at))
        print(json.dumps(results[-1]), flush=True)
        queue_faults()
        results.append(run_build("B': resumed", args.out / "B", env, log))
        print(json.dumps(results[-1]), flush=True)
        hits = sum(server.hits.values())

    uninterrupted, resumed = record_digests(args.out / "A" / "data"), record_digests(args.out / "B" / "data")
    identical = uninterrupted == resumed
    report = {
        "rows": len(paths),
        "full": full,
        "latency_s": args.latency,
        "faults": args.faults,
        "faults_queued": faults_queued,
        "server_requests": hits,
        "builds": results,
        "examples_per_split": {split: sum(c.values()) for split, c in uninterrupted.items()},
        "resumed_equals_uninterrupted": identical,
    }
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(json.dumps(report, indent=2))
    print(
        "\n| build | seconds | fetched/s | examples/s | peak RSS MiB | found | failed | shards | dataset MiB "
        "| mirror MiB |"
    )
    print("| --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
    for result in results:
        images = result.get("images", {})
        fetch_rate = result.get("download", {}).get("images_per_second", "-")
        examples = sum(result.get("examples", {}).values())
        rate = f"{examples / result['seconds']:.1f}" if examples else "-"
        print(
            f"| {result['name']} | {result['seconds']} | {fetch_rate} | {rate} | {result['peak_rss_mib']} | "
            f"{images.get('found', '-')} | {images.get('failed', '-')} | {result.get('shards', '-')} | "
            f"{result.get('dataset_mib', '-')} | {result.get('mirror_mib', '-')} |"
        )
    print(f"\nresumed build equals the uninterrupted one: {identical}")
    sys.exit(0 if identical else 1)


if __name__ == "__main__":
    main()
