import io

import numpy as np
import pytest
from PIL import Image

from artnet.data import images


def encode(image: Image.Image, fmt: str = "JPEG", **kwargs) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **kwargs)
    return out.getvalue()


def decoded(data: bytes) -> Image.Image:
    return Image.open(io.BytesIO(data))


def test_large_image_is_shrunk_to_the_size_policy():
    data, size = images.prepare_image(encode(Image.new("RGB", (2000, 1000), (200, 30, 30))))
    assert size == (800, 400)
    assert decoded(data).size == (800, 400) and decoded(data).format == "JPEG"


def test_long_strips_are_capped_on_their_long_side():
    _, size = images.prepare_image(encode(Image.new("RGB", (6000, 500))))
    assert size == (images.MAX_LONG_SIDE, 100)


def test_small_images_are_never_upscaled():
    _, size = images.prepare_image(encode(Image.new("RGB", (120, 90))))
    assert size == (120, 90)


@pytest.mark.parametrize(
    ("mode", "fmt"),
    [("L", "JPEG"), ("CMYK", "JPEG"), ("RGBA", "PNG"), ("P", "PNG"), ("I;16", "PNG"), ("1", "PNG")],
)
def test_every_colour_mode_becomes_rgb(mode, fmt):
    image = Image.new("RGB", (64, 48), (10, 120, 240)).convert(mode) if mode != "I;16" else None
    if mode == "I;16":
        image = Image.fromarray(np.full((48, 64), 40_000, dtype=np.uint16))
    data, size = images.prepare_image(encode(image, fmt))
    out = decoded(data)
    assert out.mode == "RGB" and size == (64, 48)
    if mode == "I;16":  # 16-bit values are scaled, not clipped to white
        assert 140 <= np.asarray(out)[0, 0, 0] <= 170


def test_exif_orientation_is_applied():
    image = Image.new("RGB", (80, 40), (0, 0, 0))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise on display
    _, size = images.prepare_image(encode(image, exif=exif))
    assert size == (40, 80)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty"),
        (b"this is a text file named .jpg\n", "not a readable image"),
    ],
)
def test_bad_bytes_give_a_clear_error(data, message):
    with pytest.raises(images.ImageError, match=message):
        images.prepare_image(data)


def test_truncated_jpeg_is_an_error():
    data = encode(Image.effect_noise((200, 200), 60).convert("RGB"), quality=95)
    with pytest.raises(images.ImageError, match="truncated|corrupt"):
        images.prepare_image(data[: len(data) // 2])


def test_decompression_bomb_is_refused_before_decoding():
    bomb = encode(Image.new("1", (20_000, 20_000)), "PNG")
    with pytest.raises(images.ImageError, match="too large"):
        images.prepare_image(bomb)
