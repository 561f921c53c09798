"""Demo under load: concurrent gradio_client users against the demo on 127.0.0.1.

    .venv/bin/python benchmarks/demo_load.py --model runs/sample/export            # the README's sample model
    .venv/bin/python benchmarks/demo_load.py --clients 1 --requests 50             # plain per-request latency
    .venv/bin/python benchmarks/demo_load.py --model runs/sample/export --rounds 10 # does memory level off?

Starts `artnet demo` as its own process (loopback only, its own gradio cache folder), sends `--clients` x
`--requests` classify requests per round with real images (the model's own index thumbnails when present, else
synthetic), and prints per round: errors, p50/p95 latency, throughput, the server process's resident memory
(clients run here, so they are not counted) and the size of its gradio cache on disk. Without `--model`, a tiny
random model is exported to a temporary folder.
"""

from __future__ import annotations

import argparse
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import numpy as np  # noqa: E402
from PIL import Image  # noqa: E402


def resident_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def folder_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def start_server(export_dir: Path, port: int, cache: Path) -> subprocess.Popen:
    """`artnet demo` in its own process, so its memory is the server's alone; waits until it answers."""
    command = [sys.executable, "-m", "artnet.cli", "demo", "--model", str(export_dir), "--port", str(port)]
    environment = dict(os.environ, GRADIO_TEMP_DIR=str(cache), GRADIO_ANALYTICS_ENABLED="False")
    server = subprocess.Popen(command, env=environment, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the demo server exited ({server.returncode}):\n{server.stderr.read()[-3000:]}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=2).close()
            return server
        except OSError:
            time.sleep(0.5)
    server.kill()
    raise SystemExit("the demo server did not answer within 180 s")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def tiny_export() -> Path:
    from artnet.export import export
    from artnet.models.artnet import ArtNet
    from artnet.synthetic import synthetic_source

    folder = Path(tempfile.mkdtemp()) / "export"
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 32}, index_source=synthetic_source(32))
    return folder


def test_images(export_dir: Path, count: int = 8) -> list[str]:
    thumbs = sorted((export_dir / "index" / "thumbs").glob("*.jpg"))[:count]
    if thumbs:
        return [str(path) for path in thumbs]
    folder = Path(tempfile.mkdtemp())
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (300, 240, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return sorted(str(path) for path in folder.glob("*.jpg"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="export folder (default: a tiny random model)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the burst; one table row per round")
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    export_dir = args.model or tiny_export()
    cache = Path(tempfile.mkdtemp(prefix="artnet-demo-cache-"))
    port = free_port()
    server = start_server(export_dir, port, cache)
    try:
        url = f"http://127.0.0.1:{port}/"
        images = test_images(export_dir)
        Client(url, verbose=False).predict(handle_file(images[0]), api_name="/classify")  # warm up
        memory_start = resident_mib(server.pid)
        print(
            f"model: {export_dir}; {args.clients} clients x {args.requests} requests per round on 127.0.0.1; "
            f"server in its own process; {os.cpu_count()} cores\n"
        )
        print(f"server RSS after one warm-up request: {memory_start:.0f} MiB; cache {folder_mib(cache):.1f} MiB\n")
        print("| round | requests | errors | p50 ms | p95 ms | requests/s | server RSS MiB | gradio cache MiB |")
        print("| ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        for round_number in range(1, args.rounds + 1):
            latencies, errors, wall = burst(url, images, args.clients, args.requests)
            p50, p95 = (1000 * np.percentile(latencies, q) if latencies else float("nan") for q in (50, 95))
            print(
                f"| {round_number} | {args.clients * args.requests} | {len(errors)} | {p50:.0f} | {p95:.0f} | "
                f"{len(latencies) / wall:.1f} | {resident_mib(server.pid):.0f} | {folder_mib(cache):.1f} |",
                flush=True,
            )
            for error in errors[:5]:
                print("error:", error)
    finally:
        server.terminate()
        server.wait(timeout=30)
        shutil.rmtree(cache, ignore_errors=True)


def burst(url: str, images: list[str], clients: int, requests: int) -> tuple[list[float], list[str], float]:
    """`clients` threads, each its own gradio_client, each sending `requests` classify calls."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(number: int) -> None:
        client = Client(url, verbose=False)
        for request in range(requests):
            image = images[(number + request) % len(images)]
            started = time.perf_counter()
            try:
                client.predict(handle_file(image), api_name="/classify")
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 (count every failure, whatever its kind)
                with lock:
                    errors.append(repr(error)[:200])

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(n,)) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


if __name__ == "__main__":
    main()
