"""The one place that opens untrusted image files and bytes (PIL only, no TensorFlow).

Everything that reads an image someone else made comes through here: the dataset builder (`prepare_image`,
`verify_image`), the predictor and batch prediction (`load_rgb`), and the demo (`ImageError`). Each input gets
the same guards: a byte limit checked before reading, a pixel limit checked before decoding, EXIF orientation,
any colour mode to RGB (transparency on white, 16-bit scaled), an animated GIF's first frame.

Dataset size policy: the headline model reads 331 x 331 px, and augmentation zooms and crops into that, so
the dataset stores each image with its **shorter side at most 400 px** (and its longer side at most
1200 px, which only binds for strips), never upscaled, re-encoded as JPEG quality 92. That keeps the
whole WGA set near 2 GB instead of tens of GB of originals, while every backbone of the registry
(224-331 px) still gets full resolution.
"""

from __future__ import annotations

import io
import os
import re
import stat
import warnings
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

MAX_SHORT_SIDE = 400
MAX_LONG_SIDE = 1200
JPEG_QUALITY = 92
# Decompression-bomb guard: WGA's largest images are a few megapixels; refuse above 100 Mpx
# (a 10000 x 10000 scan) before decoding a single pixel.
MAX_PIXELS = 100_000_000
MAX_BYTES = 64 * 1024 * 1024


class ImageError(ValueError):
    """The bytes are not a usable image; the message says why."""


class ImageTooLarge(ImageError):
    """A readable image over a byte or pixel limit: not "unreadable", only too big (the message gives its size)."""


class ImageShapeError(ImageError):
    """A readable image too small or too elongated to say anything about (see `check_shape`)."""


# Serving refuses what it cannot honestly answer: below 32 px a side there is no painting left to see, and past
# MAX_SERVING_ASPECT the centre crop would keep a small slice of it (training images are at most 3:1).
MIN_SIDE = 32
MAX_SERVING_ASPECT = 5


def check_shape(width: int, height: int) -> None:
    """Raise `ImageShapeError` for an image under `MIN_SIDE` px a side or longer than `MAX_SERVING_ASPECT`:1."""
    if min(width, height) < MIN_SIDE:
        raise ImageShapeError(
            f"image too small: {width}x{height} px, under {MIN_SIDE} px a side: upload a larger photo or scan"
        )
    if max(width, height) > MAX_SERVING_ASPECT * min(width, height):
        raise ImageShapeError(
            f"extreme aspect ratio: {width}x{height} px is {max(width, height) / min(width, height):.0f}:1, over "
            f"{MAX_SERVING_ASPECT}:1: crop it to the painting"
        )


def open_image(data: bytes, max_pixels: int = MAX_PIXELS) -> Image.Image:
    """Decode `data` fully into an RGB, EXIF-upright PIL image, or raise `ImageError`.

    `max_pixels` may only lower the limit (the demo does, to bound its memory per request)."""
    max_pixels = min(max_pixels, MAX_PIXELS)
    if not data:
        raise ImageError("empty file (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageTooLarge(f"file too large: {len(data) / 2**20:.0f} MiB > {MAX_BYTES / 2**20:.0f} MiB")
    try:
        with warnings.catch_warnings():
            # PIL warns above 89 Mpx; our own limit, checked below, is MAX_PIXELS.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageTooLarge(
                    f"image too large: {width}x{height} = {width * height / 1e6:.0f} Mpx "
                    f"> {max_pixels / 1e6:.0f} Mpx (decompression-bomb guard): downscale it first"
                )
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
                image.draft("RGB", _target_size(width, height))
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        # PIL refuses above twice its warning limit while reading the header, before our check above runs; its
        # message holds the real pixel count ("Image size (400000000 pixels) exceeds limit of ...").
        found = re.search(r"\((\d+) pixels\)", str(error))
        size = f"{int(found.group(1)) / 1e6:.0f} Mpx" if found else f"over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx"
        raise ImageTooLarge(
            f"image too large: {size} > {max_pixels / 1e6:.0f} Mpx (decompression-bomb guard): downscale it first"
        ) from error
    except UnidentifiedImageError as error:
        # PIL's own message names an in-memory buffer ("cannot identify image file <_io.BytesIO ...>").
        raise ImageError(
            "not a readable image: its bytes are in no image format PIL knows (JPEG, PNG, GIF, WebP, TIFF, BMP, ...)"
        ) from error
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        # PIL reports a truncated or corrupt stream as OSError ("image file is truncated").
        raise ImageError(f"corrupt or truncated image: {error}") from error
    image = ImageOps.exif_transpose(image)
    return to_rgb(image)


def to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip everything above 255 to white.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        if image.mode != "RGBA":
            image = image.convert("RGBA")
        # Pasted through its own alpha onto white: the same pixels as compositing over opaque white, at 8 bytes
        # a pixel beside the decoded image instead of 15 (a white RGBA copy, the composite, its RGB copy).
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image, mask=image.getchannel("A"))
        return background
    return image.convert("RGB")


def _target_size(width: int, height: int) -> tuple[int, int]:
    scale = min(1.0, MAX_SHORT_SIDE / max(1, min(width, height)), MAX_LONG_SIDE / max(1, width, height))
    return max(1, round(width * scale)), max(1, round(height * scale))


def prepare_image(data: bytes) -> tuple[bytes, tuple[int, int]]:
    """JPEG bytes of the image shrunk to the size policy, and its (width, height)."""
    image = open_image(data)
    size = _target_size(*image.size)
    if size != image.size:
        image = image.resize(size, Image.Resampling.LANCZOS, reducing_gap=3.0)
    out = io.BytesIO()
    image.save(out, format="JPEG", quality=JPEG_QUALITY, optimize=True)
    return out.getvalue(), image.size


def verify_image(data: bytes) -> None:
    """Raise `ImageError` unless `data` decodes completely."""
    open_image(data)


# --- any input -> RGB array (serving) ----------------------------------------------------------------------

# A strip longer than this many times its short side is cut to its centre first, whatever the framing: resizing
# a 1 x 4000 strip whole would make a 331 x 1.3 M float tensor (5 GB). The centre crop keeps only the middle
# square anyway, and squash squeezes a longer strip's long side beyond recognition. The dataset
# stores images at most 3:1, so nothing the model was trained on is affected.
MAX_ASPECT = 4
# Images whose short side exceeds this many times the model's input size are box-reduced first (bounded memory
# for a 100 Mpx scan); the antialiased resize that follows would average those pixels anyway.
MAX_OVERSIZE = 4


def load_rgb(image) -> np.ndarray:
    """A path, encoded bytes, a PIL image or a uint8 array -> uint8 (H, W, 3) RGB, or `ImageError` saying why.

    One entry point for every input type, so each gets the same guards (file size, pixel count, colour modes,
    EXIF orientation; an animated GIF gives its first frame).
    """
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        try:
            return load_path(path)
        except ImageError as error:
            raise ImageError(f"{path}: {error}") from error
    if isinstance(image, bytes | bytearray | memoryview):
        return np.asarray(open_image(bytes(image)))
    if isinstance(image, Image.Image):
        return _pil_to_rgb(image)
    if isinstance(image, np.ndarray):
        return _array_to_rgb(image)
    raise ImageError(
        f"cannot read an image from a {type(image).__name__}: give a path, encoded bytes, a PIL image "
        "or a uint8 numpy array (H, W, 3) or (H, W)"
    )


def load_photo(image) -> tuple[np.ndarray, tuple[int, int]]:
    """`load_rgb`, and the (width, height) the image has as it is shown. They differ where a large JPEG was
    decoded at a reduced size: what is found on the pixels is reported in the photo's own."""
    if isinstance(image, str | os.PathLike):
        try:
            return _decode_photo(read_path(Path(image)))
        except ImageError as error:
            raise type(error)(f"{image}: {error}") from error
    if isinstance(image, bytes | bytearray | memoryview):
        return _decode_photo(bytes(image))
    rgb = load_rgb(image)
    return rgb, (int(rgb.shape[1]), int(rgb.shape[0]))


def _decode_photo(data: bytes) -> tuple[np.ndarray, tuple[int, int]]:
    return np.asarray(open_image(data)), upright_size(data)


def load_path(path: Path) -> np.ndarray:
    """A regular image file -> uint8 RGB array (see `read_path` for what is checked before reading)."""
    return np.asarray(open_image(read_path(path)))


def read_path(path: Path) -> bytes:
    """A regular image file's bytes, reading at most `MAX_BYTES` + 1 of them.

    The file is opened once and checked on that descriptor (fstat), so what is read is what was checked: a FIFO,
    a device such as /dev/zero or a socket is refused before a byte is read. O_NONBLOCK keeps opening a FIFO
    from waiting forever for a writer; it changes nothing for regular files.
    """
    path = Path(path)
    if path.is_dir():
        raise ImageError("is a folder, not an image file")
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise ImageError("no such file") from None
    except OSError as error:
        raise ImageError(f"cannot open the file: {error.strerror or error}") from error
    with os.fdopen(descriptor, "rb") as stream:
        try:
            info = os.fstat(stream.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise ImageError("not a regular file (a FIFO, device or socket): give an image file")
            if info.st_size > MAX_BYTES:  # checked before reading, so a huge file is never loaded into memory
                raise ImageError(f"file too large: {info.st_size / 2**20:.0f} MiB > {MAX_BYTES / 2**20:.0f} MiB")
            # One byte past the limit tells a file that grew since fstat; open_image then refuses it.
            return stream.read(MAX_BYTES + 1)
        except OSError as error:
            raise ImageError(f"cannot read the file: {error.strerror or error}") from error


def upright_size(data: bytes) -> tuple[int, int]:
    """(width, height) of encoded image bytes as they are shown: after the EXIF orientation, before any
    reduced-size decoding. `open_image` may decode a large JPEG at 1/2 to 1/8 scale; an outline found on those
    pixels is scaled back to this size, the photo's own."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except (OSError, SyntaxError, ValueError, EOFError, UnidentifiedImageError) as error:
        raise ImageError(f"not a readable image: {error}") from error
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _pil_to_rgb(image: Image.Image) -> np.ndarray:
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise ImageError(f"image too large: {width}x{height} > {MAX_PIXELS / 1e6:.0f} Mpx")
    try:
        image.load()  # an image fresh from Image.open is lazy: a truncated file fails here
        image = ImageOps.exif_transpose(image)
        return np.asarray(to_rgb(image))
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise ImageError(f"unreadable PIL image: {error}") from error


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    if array.dtype != np.uint8:
        raise ImageError(f"a numpy image must be uint8 in [0, 255], got {array.dtype}: convert it first")
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[-1] not in (3, 4):
        raise ImageError(f"a numpy image must be (H, W, 3), (H, W, 4) or (H, W); got shape {array.shape}")
    height, width = array.shape[:2]
    if height == 0 or width == 0:
        raise ImageError(f"empty image: shape {array.shape}")
    if height * width > MAX_PIXELS:
        raise ImageError(f"image too large: {width}x{height} > {MAX_PIXELS / 1e6:.0f} Mpx")
    if array.shape[-1] == 4:  # transparency goes on white, as in the dataset
        return np.asarray(to_rgb(Image.fromarray(array, "RGBA")))
    return np.ascontiguousarray(array)


def bound_size(array: np.ndarray, image_size: int) -> np.ndarray:
    """Cut extreme strips to their centre and box-reduce huge images, so resizing needs bounded memory.

    A no-op for every image of aspect ratio up to `MAX_ASPECT` and short side up to `MAX_OVERSIZE` x
    `image_size`: those are resized exactly as in training.
    """
    height, width = array.shape[:2]
    longest = MAX_ASPECT * min(height, width)
    if height > longest:
        top = (height - longest) // 2
        array = array[top : top + longest]
    if width > longest:
        left = (width - longest) // 2
        array = array[:, left : left + longest]
    factor = min(array.shape[:2]) // (2 * image_size)
    if min(array.shape[:2]) > MAX_OVERSIZE * image_size and factor >= 2:
        array = np.asarray(Image.fromarray(np.ascontiguousarray(array)).reduce(factor))
    return array
