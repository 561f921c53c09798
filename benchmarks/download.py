"""Download benchmark: artnet's downloader vs a sequential single-connection fetch.

    .venv/bin/python benchmarks/download.py [--latency 0.05] [--limit 444]

Both fetch the same images from a local stand-in for wga.hu on 127.0.0.1 that adds `--latency` seconds to
every response (as a distant server would). artnet runs at its default concurrency (8 connections) with the
rate limit lifted (`max_rate=0`): the limit is politeness towards wga.hu, and would otherwise be what this
measures. A second artnet run injects faults (500s, resets, truncated bodies) into 10 % of the images and
must still end with every image, through retries. Images: ../shared/wga-sample when present, else the
builder's generated dummy mirror.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

from artnet.data.images import ImageError, verify_image
from artnet.data.wga import download
from artnet.data.wga.catalog import parse_catalog, read_catalog_bytes, usable_paintings
from artnet.data.wga.http_client import DownloadConfig
from artnet.testing.dummy_mirror import temporary_mirror
from artnet.testing.fake_server import FaultyWgaServer

ROOT = Path(__file__).resolve().parents[1]


def _is_image(path: Path) -> bool:
    try:
        verify_image(path.read_bytes())
    except (OSError, ImageError):
        return False
    return True


def sequential_fetch(base_url: str, paths: list[str]) -> float:
    """One keep-alive connection, one request at a time: the 2020 scraper's way."""
    host = urlsplit(base_url)
    connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    started = time.perf_counter()
    for path in paths:
        connection.request("GET", f"/{path}", headers={"User-Agent": "sequential-baseline"})
        response = connection.getresponse()
        body = response.read()
        if response.status != 200 or not body:
            raise RuntimeError(f"baseline failed on {path}: HTTP {response.status}")
        if response.getheader("Connection", "").lower() == "close":
            connection.close()
            connection = http.client.HTTPConnection(host.hostname, host.port, timeout=30)
    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--latency", type=float, default=0.05, help="seconds added to every response")
    parser.add_argument("--limit", type=int, default=444, help="number of images")
    args = parser.parse_args()

    shared = ROOT.parent / "shared" / "wga-sample"
    mirror = shared if (shared / "data_txt.zip").is_file() else temporary_mirror()
    rows = usable_paintings(parse_catalog(read_catalog_bytes(mirror))[0])
    paths = [row.image_path for row in rows if _is_image(mirror / row.image_path)][: args.limit]
    total_bytes = sum((mirror / path).stat().st_size for path in paths)
    print(f"{len(paths)} images ({total_bytes / 2**20:.1f} MiB) from {mirror}, {args.latency * 1000:.0f} ms latency")

    with FaultyWgaServer(mirror, latency=args.latency) as server:
        baseline = sequential_fetch(server.base_url, paths)
        config = DownloadConfig(base_url=server.base_url, max_rate=0)
        with tempfile.TemporaryDirectory() as out:
            result = download.mirror_images(paths, Path(out), config, description="artnet")
        assert result.counts()[download.FOUND] == len(paths), result.counts()
        for index, path in enumerate(paths):
            if index % 10 == 0:
                server.faults[path] = [[500, "reset", "truncate", 503][index // 10 % 4]]
        faulty_config = DownloadConfig(base_url=server.base_url, max_rate=0, backoff=0.05)
        with tempfile.TemporaryDirectory() as out:
            faulty = download.mirror_images(paths, Path(out), faulty_config, description="artnet+faults")
    rows_out = [
        ("sequential, 1 connection", baseline, len(paths), 0),
        (f"artnet, {config.workers} connections", result.seconds, result.counts()[download.FOUND], result.retried),
        ("artnet, 10 % faults injected", faulty.seconds, faulty.counts()[download.FOUND], faulty.retried),
    ]
    print("\n| fetch | seconds | images/s | images ok | retries | speed-up |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for name, seconds, ok, retries in rows_out:
        speed_up = baseline / seconds
        print(f"| {name} | {seconds:.2f} | {ok / seconds:.1f} | {ok}/{len(paths)} | {retries} | {speed_up:.1f}x |")


if __name__ == "__main__":
    main()
