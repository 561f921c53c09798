"""Check and shrink painting images before they enter the dataset.

Size policy: the headline model reads 331 x 331 px, and augmentation zooms and crops into that, so
the dataset stores each image with its **shorter side at most 400 px** (and its longer side at most
1200 px, which only binds for strips), never upscaled, re-encoded as JPEG quality 92. That keeps the
whole WGA set near 2 GB instead of tens of GB of originals, while every backbone of the registry
(224-331 px) still gets full resolution.
"""

from __future__ import annotations

import io
import warnings

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


def open_image(data: bytes) -> Image.Image:
    """Decode `data` fully into an RGB, EXIF-upright PIL image, or raise `ImageError`."""
    if not data:
        raise ImageError("empty file (0 bytes)")
    if len(data) > MAX_BYTES:
        raise ImageError(f"file too large: {len(data) / 2**20:.0f} MiB > {MAX_BYTES / 2**20:.0f} MiB")
    try:
        with warnings.catch_warnings():
            # PIL warns above 89 Mpx; our own limit, checked below, is MAX_PIXELS.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > MAX_PIXELS:
                raise ImageError(
                    f"image too large: {width}x{height} = {width * height / 1e6:.0f} Mpx "
                    f"> {MAX_PIXELS / 1e6:.0f} Mpx (decompression-bomb guard)"
                )
            if image.format == "JPEG":
                # Let libjpeg decode at 1/2, 1/4 or 1/8 scale when the target is that much smaller.
                image.draft("RGB", _target_size(width, height))
            image.load()
    except ImageError:
        raise
    except Image.DecompressionBombError as error:
        # PIL refuses above twice its warning limit while reading the header, before our check above runs.
        raise ImageError(
            f"image too large: over {2 * Image.MAX_IMAGE_PIXELS / 1e6:.0f} Mpx > {MAX_PIXELS / 1e6:.0f} Mpx "
            "(decompression-bomb guard): downscale it first"
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
    return _to_rgb(image)


def _to_rgb(image: Image.Image) -> Image.Image:
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit greyscale: scale to 8 bits rather than clip everything above 255 to white.
        image = image.point(lambda value: value / 256).convert("L")
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        image = image.convert("RGBA")
        background = Image.new("RGBA", image.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, image).convert("RGB")
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
