"""Demo under load: concurrent visitors against the demo on 127.0.0.1.

    .venv/bin/python benchmarks/demo_load.py --model runs/sample/export            # the README's sample model
    .venv/bin/python benchmarks/demo_load.py --clients 1 --requests 50             # plain per-request latency
    .venv/bin/python benchmarks/demo_load.py --model runs/sample/export --rounds 10 # does memory level off?
    .venv/bin/python benchmarks/demo_load.py --worst-case 4000 --worst-case 9999   # peak memory, hostile uploads
    .venv/bin/python benchmarks/demo_load.py --model runs/sample/export --inputs both --rounds 3  # photos vs scans

Starts `artnet demo` as its own process (loopback only, its own gradio cache folder), sends `--clients` x
`--requests` classify requests per round with real images (the model's own index thumbnails when present, else
synthetic; with `--inputs photos`, 12-megapixel phone photos of them hung on a gallery wall, rendered by
`artnet.testing.gallery_photo`, which the demo must find and cut out first; `--inputs both` alternates a burst of
scans and a burst of photos in each round, so that their ratio is measured side by side), and prints per round:
errors, p50/p95 latency, throughput, the server process's resident memory (clients run here, so they are not
counted) and the size of its gradio cache on disk. Without `--model`, a tiny random model is exported to a
temporary folder.
"""

from __future__ import annotations

import argparse
import os
import secrets
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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of process `pid` so far (its threads included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def folder_mib(folder: Path) -> float:
    return sum(path.stat().st_size for path in folder.rglob("*") if path.is_file()) / 2**20


def start_server(export_dir: Path, port: int, cache: Path, log: Path) -> subprocess.Popen:
    """`artnet demo` in its own process, so its memory is the server's alone (its output goes to `log`, a file:
    a pipe nobody reads would stall it once full); waits until it answers."""
    command = [sys.executable, "-m", "artnet.cli", "demo", "--model", str(export_dir), "--port", str(port)]
    environment = dict(os.environ, GRADIO_TEMP_DIR=str(cache), GRADIO_ANALYTICS_ENABLED="False")
    with log.open("w") as output:
        server = subprocess.Popen(command, env=environment, stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the demo server exited ({server.returncode}):\n{log.read_text()[-3000:]}")
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


def tiny_export(work: Path) -> Path:
    from artnet.data.synthetic import synthetic_source
    from artnet.models.artnet import ArtNet
    from artnet.serving.export import export

    folder = work / "export"
    export(ArtNet("tiny", image_size=32), folder, card={"train_examples": 32}, index_source=synthetic_source(32))
    return folder


def test_images(export_dir: Path, work: Path, count: int = 8) -> list[str]:
    thumbs = sorted((export_dir / "index" / "thumbs").glob("*.jpg"))[:count]
    if thumbs:
        return [str(path) for path in thumbs]
    folder = work / "images"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(count):
        Image.fromarray(rng.integers(0, 256, (300, 240, 3), dtype=np.uint8)).save(folder / f"{i}.jpg")
    return sorted(str(path) for path in folder.glob("*.jpg"))


def gallery_photos(images: list[str], work: Path, long_side: int = 4000) -> list[str]:
    """Each image hung on a wall as a 4000 x 3000 phone photo (12 Mpx, JPEG quality 90, as phones save them)."""
    from artnet.testing.gallery_photo import render_gallery_photo

    folder = work / "photos"
    folder.mkdir(exist_ok=True)
    photos = []
    for number, image in enumerate(images):
        painting = np.asarray(Image.open(image).convert("RGB"))
        photo = render_gallery_photo(painting, seed=number, difficulty="easy", long_side=long_side).image
        path = folder / f"photo_{number}.jpg"
        Image.fromarray(photo).save(path, quality=90)
        photos.append(str(path))
    return photos


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", type=Path, default=None, help="export folder (default: a tiny random model)")
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--requests", type=int, default=10, help="per client")
    parser.add_argument("--rounds", type=int, default=1, help="repeat the burst; one table row per round")
    parser.add_argument("--distinct", action="store_true", help="a new file with every request (cache growth)")
    parser.add_argument(
        "--inputs",
        choices=("scans", "photos", "both"),
        default="scans",
        help="what visitors send: the images, 12-Mpx gallery photos of them, or a burst of each per round",
    )
    parser.add_argument(
        "--gradio-client",
        action="store_true",
        help="send through gradio_client (the clients before 2026-12-02: they cost more CPU than the server)",
    )
    parser.add_argument(
        "--worst-case",
        type=int,
        action="append",
        metavar="SIDE",
        help="instead: 2 classify + 2 explain requests at once, each a SIDE x SIDE RGBA PNG; the server's peak RSS",
    )
    args = parser.parse_args()

    from gradio_client import Client, handle_file

    work = Path(tempfile.mkdtemp(prefix="artnet-demo-load-"))  # everything this run writes; removed at the end
    cache = work / "gradio-cache"
    server = None
    try:
        export_dir = args.model or tiny_export(work)
        port = free_port()
        server = start_server(export_dir, port, cache, work / "server.log")
        url = f"http://127.0.0.1:{port}/"
        scans = test_images(export_dir, work)
        inputs = {"scans": scans}
        if args.inputs != "scans":
            inputs["photos"] = gallery_photos(scans, work)
            if args.inputs == "photos":
                del inputs["scans"]
        images = next(iter(inputs.values()))
        for kind in inputs.values():
            Client(url, verbose=False).predict(handle_file(kind[0]), api_name="/classify")  # warm up
        if args.worst_case:
            for side in args.worst_case:
                worst_case(url, server.pid, work, side)
            return
        memory_start = resident_mib(server.pid)
        print(
            f"model: {export_dir}; {args.clients} clients x {args.requests} requests per round on 127.0.0.1; "
            f"{'a new file with every request' if args.distinct else f'{len(images)} images in turn'}; "
            f"server in its own process; {os.cpu_count()} cores\n"
        )
        print(f"server RSS after one warm-up request: {memory_start:.0f} MiB; cache {folder_mib(cache):.1f} MiB\n")
        # The CPU columns say who is the bottleneck: cores busy in the server, and in this process's clients.
        print(
            "| round | inputs | requests | errors | p50 ms | p95 ms | requests/s | server cores | client cores "
            "| server RSS MiB | gradio cache MiB |"
        )
        print("| ---: | --- | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: | ---: |")
        bursts = [(number, kind) for number in range(1, args.rounds + 1) for kind in inputs]
        for round_number, kind in bursts:
            distinct_into = work / "uploads" / f"{round_number}-{kind}" if args.distinct else None
            uploads = plan_uploads(inputs[kind], args.clients, args.requests, distinct_into)
            server_cpu, client_cpu = cpu_seconds(server.pid), time.process_time()
            latencies, errors, wall = burst(url, uploads, args.gradio_client)
            server_cores = (cpu_seconds(server.pid) - server_cpu) / wall
            client_cores = (time.process_time() - client_cpu) / wall
            p50, p95 = (1000 * np.percentile(latencies, q) if latencies else float("nan") for q in (50, 95))
            print(
                f"| {round_number} | {kind} | {args.clients * args.requests} | {len(errors)} | {p50:.0f} | {p95:.0f} | "
                f"{len(latencies) / wall:.1f} | {server_cores:.2f} | {client_cores:.2f} | "
                f"{resident_mib(server.pid):.0f} | {folder_mib(cache):.1f} |",
                flush=True,
            )
            for error in errors[:5]:
                print("error:", error)
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=30)
        shutil.rmtree(work, ignore_errors=True)


def rgba_png(side: int, path: Path) -> Path:
    """A SIDE x SIDE RGBA PNG of noise rows: small on disk, SIDE^2 x 4 bytes once decoded, then composited."""
    row = np.random.default_rng(0).integers(0, 256, (1, side, 4), dtype=np.uint8)
    Image.fromarray(np.repeat(row, side, axis=0), "RGBA").save(path, compress_level=9)
    return path


def worst_case(url: str, pid: int, work: Path, side: int) -> None:
    """Two classify and two explain requests at once, each a SIDE x SIDE RGBA PNG (the issue's 8.1 GB case at
    9999): the server's RSS before, its peak (sampled every 10 ms) and 5 s after."""
    from gradio_client import Client, handle_file

    image = rgba_png(side, work / f"rgba_{side}.png")
    before = resident_mib(pid)
    peak, done = [before], threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak.append(resident_mib(pid))
            time.sleep(0.01)

    outcomes: list[str] = []

    def request(api_name: str) -> None:
        try:
            Client(url, verbose=False).predict(handle_file(str(image)), api_name=api_name)
            outcomes.append(f"{api_name} ok")
        except Exception as error:  # noqa: BLE001 (a refusal is an answer here)
            outcomes.append(f"{api_name} refused: {str(error)[:90]}")

    sampler = threading.Thread(target=sample)
    sampler.start()
    started = time.perf_counter()
    threads = [threading.Thread(target=request, args=(name,)) for name in ("/classify", "/explain") * 2]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - started
    time.sleep(5)
    done.set()
    sampler.join()
    answers = "; ".join(sorted(set(outcomes)))
    print(
        f"| {side}x{side} RGBA PNG ({image.stat().st_size / 2**10:.0f} KiB), 2 classify + 2 explain | "
        f"{before:.0f} | {max(peak):.0f} | {resident_mib(pid):.0f} | {wall:.1f} s | {answers} |",
        flush=True,
    )


def plan_uploads(images: list[str], clients: int, requests: int, distinct_into: Path | None) -> list[list[str]]:
    """The file each client sends with each request: the test images in turn, or, with `distinct_into`, a fresh
    file per request (a test image with a unique tail after its end marker: decoders ignore it, but gradio's
    content-addressed cache stores it anew, as it would a new visitor's photo)."""
    plan = [[images[(number + request) % len(images)] for request in range(requests)] for number in range(clients)]
    if distinct_into is None:
        return plan
    distinct_into.mkdir(parents=True, exist_ok=True)
    for number, row in enumerate(plan):
        for request, image in enumerate(row):
            unique = distinct_into / f"{number:03d}-{request:03d}-{time.time_ns()}{Path(image).suffix}"
            unique.write_bytes(Path(image).read_bytes() + f"artnet-load-{unique.stem}".encode())
            row[request] = str(unique)
    return plan


class HttpUser:
    """One visitor as a browser is one: one session and one keep-alive HTTP connection, speaking gradio's
    documented REST API (upload the file, call `/classify`, read its server-sent events), then fetching any
    gallery images of the answer, as the page would.

    Why not gradio_client: it opens a new HTTPS-capable httpx client, with a fresh SSL context (~40 ms of CPU),
    for every file it downloads. With six thumbnails a request, 20 gradio_client users on this 2-core machine
    spent 1.05 cores of their own and left the server at 0.22 (measured with py-spy, 2026-12-02): the benchmark
    measured its own clients. This user costs a few ms of CPU a request."""

    def __init__(self, url: str, api_name: str = "classify"):
        import httpx

        self.http = httpx.Client(base_url=url, timeout=120)
        self.api_name = api_name
        # One session per visitor, as a browser tab (and a gradio_client) has: without it every call is a new
        # session, whose state gradio builds from the whole page's config (measured: 16 % of its event loop).
        self.session_hash = secrets.token_hex(8)

    def close(self) -> None:
        self.http.close()

    def call(self, image: str) -> list:
        """The endpoint's outputs for `image`, thumbnails fetched; raises on any error the server reports."""
        import json

        with open(image, "rb") as handle:
            upload = self.http.post("gradio_api/upload", files={"files": (Path(image).name, handle.read())})
        upload.raise_for_status()
        data = [{"path": upload.json()[0], "meta": {"_type": "gradio.FileData"}}]
        body = {"data": data, "session_hash": self.session_hash}
        started = self.http.post(f"gradio_api/call/{self.api_name}", json=body)
        started.raise_for_status()
        event, outputs = None, None
        with self.http.stream("GET", f"gradio_api/call/{self.api_name}/{started.json()['event_id']}") as stream:
            for line in stream.iter_lines():
                if line.startswith("event:"):
                    event = line.partition(":")[2].strip()
                elif line.startswith("data:") and event in ("complete", "error"):
                    outputs = json.loads(line.partition(":")[2])
                    break
        if event != "complete":
            raise RuntimeError(f"{self.api_name}: {event}: {outputs}")
        for value in outputs:  # what the page then loads: each gallery image
            if isinstance(value, list):
                for item in value:
                    if isinstance(item, dict) and isinstance(item.get("image"), dict) and item["image"].get("url"):
                        self.http.get(item["image"]["url"]).raise_for_status()
        return outputs


def burst(url: str, uploads: list[list[str]], use_gradio_client: bool = False) -> tuple[list[float], list[str], float]:
    """One thread per row of `uploads`, each one visitor (`HttpUser`, or a gradio_client), sending its files as
    classify calls."""
    from gradio_client import Client, handle_file

    latencies: list[float] = []
    errors: list[str] = []
    lock = threading.Lock()

    def user(files: list[str]) -> None:
        if use_gradio_client:
            client = Client(url, verbose=False)
            send = lambda image: client.predict(handle_file(image), api_name="/classify")  # noqa: E731
        else:
            client = HttpUser(url)
            send = client.call
        for image in files:
            started = time.perf_counter()
            try:
                send(image)
                with lock:
                    latencies.append(time.perf_counter() - started)
            except Exception as error:  # noqa: BLE001 (count every failure, whatever its kind)
                with lock:
                    errors.append(repr(error)[:200])
        if not use_gradio_client:
            client.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=user, args=(files,)) for files in uploads]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return latencies, errors, time.perf_counter() - started


if __name__ == "__main__":
    main()
