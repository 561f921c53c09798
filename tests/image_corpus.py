"""The corpus of odd and bad image files that every entry point (predictor, CLI, served demo) must survive.

Each file either predicts ("ok") or fails with an error whose message holds the given fragment.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image


def encode(image: Image.Image, fmt: str, **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def noise(width: int, height: int, seed: int = 0) -> Image.Image:
    pixels = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    return Image.fromarray(pixels)


def huge_bilevel_png(width: int, height: int) -> bytes:
    """A valid 1-bit PNG written by hand: a few dozen KB on disk, `width * height` pixels once decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    rows = (b"\0" * (1 + (width + 7) // 8)) * 1000  # filter byte + packed bits, 1000 rows at a time
    compressor = zlib.compressobj(9)
    body = b"".join(compressor.compress(rows) for _ in range(height // 1000)) + compressor.flush()
    header = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", body) + chunk(b"IEND", b"")


def animated_gif() -> bytes:
    frames = [Image.new("RGB", (20, 10), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    return encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)


def exif_rotated_jpeg() -> bytes:
    exif = Image.Exif()
    exif[0x0112] = 6  # stored 80 wide x 40 high, displayed rotated 90 degrees clockwise
    return encode(noise(80, 40), "JPEG", exif=exif)


def sixteen_bit_png() -> bytes:
    ramp = np.linspace(0, 65535, 48 * 64).reshape(48, 64).astype(np.uint16)
    return encode(Image.fromarray(ramp), "PNG")


def rgba_png() -> bytes:
    pixels = np.zeros((30, 40, 4), dtype=np.uint8)
    pixels[..., 0] = 200
    pixels[:, 20:, 3] = 255  # left half fully transparent
    return encode(Image.fromarray(pixels, "RGBA"), "PNG")


# name -> (bytes, expected: "ok" or a fragment of the ImageError message). Every serving path (Predictor, `artnet
# predict`, the demo) refuses images under 32 px a side: the small CMYK / RGBA / GIF files are decoded (see
# test_decoding_details_of_the_odd_files) and then refused for their size.
CORPUS = {
    "zero_bytes.jpg": (lambda: b"", "empty file"),
    "text_named.jpg": (lambda: b"this is not a painting\n" * 10, "not a readable image"),
    "truncated.jpg": (lambda: encode(noise(64, 64), "JPEG")[:1500], "truncated"),
    "huge_20000x20000.png": (lambda: huge_bilevel_png(20_000, 20_000), "decompression-bomb guard"),  # PIL refuses
    "large_12000x10000.png": (lambda: huge_bilevel_png(12_000, 10_000), "120 Mpx > 100 Mpx"),  # artnet refuses
    "cmyk.jpg": (lambda: encode(Image.new("CMYK", (40, 30), (0, 255, 255, 0)), "JPEG"), "under 32 px"),
    "sixteen_bit.png": (sixteen_bit_png, "ok"),
    "rgba.png": (rgba_png, "under 32 px"),
    "animated.gif": (animated_gif, "under 32 px"),
    "exif_rotated.jpg": (exif_rotated_jpeg, "ok"),
    "one_pixel.png": (lambda: encode(Image.new("RGB", (1, 1), (90, 60, 30)), "PNG"), "under 32 px"),
    "strip_1x4000.png": (lambda: encode(noise(1, 4000), "PNG"), "under 32 px"),
    "strip_10x1000000.png": (lambda: encode(Image.new("RGB", (10, 1_000_000), (120, 80, 40)), "PNG"), "under 32 px"),
}


def write_corpus(folder: Path) -> Path:
    for name, (make, _) in CORPUS.items():
        (folder / name).write_bytes(make())
    return folder
