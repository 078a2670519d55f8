"""Image normalization: sniffing, safe decoding, decoration filters, resizing and re-encoding."""

from __future__ import annotations

import hashlib
import io
import struct
import time
import zlib

import pytest
from PIL import Image, ImageDraw, ImageFile

from triage.domain.images import (
    ImageCandidate,
    NormalizedImage,
    SkippedImage,
    estimate_image_tokens,
    normalize_image,
    select_images,
    sniff_image_type,
)


def encode(image: Image.Image, fmt: str, **params: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format=fmt, **params)
    return buffer.getvalue()


def photo(width: int, height: int, fmt: str = "JPEG", **params: object) -> bytes:
    """A smooth gradient with noise: thousands of colours, like a photograph."""
    gradient = Image.linear_gradient("L").resize((width, height))
    noise = Image.effect_noise((width, height), 40)
    image = Image.merge(
        "RGB", (gradient, noise, gradient.transpose(Image.Transpose.FLIP_LEFT_RIGHT))
    )
    return encode(image, fmt, **params)


def diagram(width: int = 600, height: int = 400) -> bytes:
    """Flat fills and sharp lines in three colours, like line art or a simple chart."""
    image = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle((50, 50, 250, 200), fill=(30, 90, 200))
    draw.line((0, height - 1, width - 1, 0), fill="black", width=3)
    return encode(image, "PNG")


def candidate(data: bytes, *, inline: bool = False, declared: str = "image/png") -> ImageCandidate:
    return ImageCandidate(
        data=data,
        sha256=hashlib.sha256(data).hexdigest(),
        declared_type=declared,
        content_id=None,
        inline=inline,
        filename=None,
    )


def normalized(result: NormalizedImage | SkippedImage) -> NormalizedImage:
    assert isinstance(result, NormalizedImage), result
    return result


def skipped(result: NormalizedImage | SkippedImage) -> SkippedImage:
    assert isinstance(result, SkippedImage), result
    return result


def reopen(result: NormalizedImage) -> Image.Image:
    image = Image.open(io.BytesIO(result.data))
    image.load()
    return image


def patch_png_size(data: bytes, width: int, height: int) -> bytes:
    """Rewrite the IHDR dimensions of a PNG and fix its CRC, leaving the pixel data tiny."""
    assert data[12:16] == b"IHDR"
    ihdr = struct.pack(">II", width, height) + data[24:29]
    crc = struct.pack(">I", zlib.crc32(b"IHDR" + ihdr))
    return data[:16] + ihdr + crc + data[33:]


# --- sniffing -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fmt", "expected"),
    [
        ("JPEG", "image/jpeg"),
        ("PNG", "image/png"),
        ("GIF", "image/gif"),
        ("WEBP", "image/webp"),
        ("BMP", "image/bmp"),
        ("TIFF", "image/tiff"),
    ],
)
def test_sniff_recognises_common_formats(fmt: str, expected: str) -> None:
    assert sniff_image_type(encode(Image.new("RGB", (10, 10), "red"), fmt)) == expected


def test_sniff_rejects_text_and_near_misses() -> None:
    assert sniff_image_type(b"") is None
    assert sniff_image_type(b"Hello, this is not a picture at all.") is None
    assert sniff_image_type(b"BM is how this text starts, but it is no bitmap") is None
    assert sniff_image_type(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_png_declared_as_octet_stream_is_an_image() -> None:
    data = diagram()
    kept, skipped_images = select_images([candidate(data, declared="application/octet-stream")])
    assert sniff_image_type(data) == "image/png"
    assert len(kept) == 1
    assert skipped_images == []


def test_text_declared_as_jpeg_is_not_an_image() -> None:
    data = b"Dear customer,\r\nplease find the invoice attached.\r\n" * 20
    kept, skipped_images = select_images([candidate(data, declared="image/jpeg")])
    assert sniff_image_type(data) is None
    assert kept == []
    assert [s.reason for s in skipped_images] == ["not an image"]


# --- decoration -----------------------------------------------------------------------


def test_tracking_pixel_gif_is_skipped() -> None:
    pixel = encode(Image.new("P", (1, 1), 0), "GIF", transparency=0)
    result = skipped(normalize_image(pixel))
    assert result.reason == "tracking pixel 1x1"
    assert result.sha256 == hashlib.sha256(pixel).hexdigest()


def test_small_icon_is_skipped_with_its_size() -> None:
    assert skipped(normalize_image(photo(64, 48))).reason == "too small: 64x48"


def test_banner_with_extreme_aspect_ratio_is_skipped() -> None:
    result = skipped(normalize_image(photo(1800, 120)))
    assert "aspect ratio" in result.reason
    assert "1800x120" in result.reason


# --- safety ---------------------------------------------------------------------------


def test_png_bomb_is_refused_from_the_header_without_decoding(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    bomb = patch_png_size(encode(Image.new("L", (8, 8)), "PNG"), 50_000, 50_000)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    started = time.perf_counter()
    result = skipped(normalize_image(bomb))
    assert time.perf_counter() - started < 0.5
    assert "bomb" in result.reason


def test_header_over_our_pixel_limit_is_refused_with_its_dimensions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # 8000x8000 is under Pillow's own limit, so only our header check stops it.
    big = patch_png_size(encode(Image.new("L", (8, 8)), "PNG"), 8000, 8000)

    def no_decoding(self: ImageFile.ImageFile) -> None:
        raise AssertionError("pixels were decoded")

    monkeypatch.setattr(ImageFile.ImageFile, "load", no_decoding)
    assert skipped(normalize_image(big)).reason == "decompression bomb: 8000x8000"


def test_pillow_bomb_warning_is_an_error_locally_only() -> None:
    # 10000x10000 is over Pillow's warning threshold (~89 MP) but under its error threshold,
    # and the caller allowed more pixels, so only the warning-turned-error can refuse it.
    big = patch_png_size(encode(Image.new("L", (8, 8)), "PNG"), 10_000, 10_000)
    assert Image.MAX_IMAGE_PIXELS is not None
    assert Image.MAX_IMAGE_PIXELS < 10_000 * 10_000 < 2 * Image.MAX_IMAGE_PIXELS
    result = skipped(normalize_image(big, max_pixels=500_000_000))
    assert "bomb" in result.reason
    # Outside the call the global settings are untouched.
    assert Image.MAX_IMAGE_PIXELS == 89_478_485
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False
    with pytest.warns(Image.DecompressionBombWarning):
        Image.open(io.BytesIO(big))


def test_truncated_jpeg_is_refused() -> None:
    data = photo(800, 600)
    result = skipped(normalize_image(data[: len(data) // 2]))
    assert result.reason == "truncated image"
    assert ImageFile.LOAD_TRUNCATED_IMAGES is False


def test_corrupt_png_pixel_data_is_refused_with_a_reason() -> None:
    data = bytearray(diagram(1600, 1000))
    start = data.index(b"IDAT") + 30
    data[start : start + 60] = b"\x55" * 60  # the header is fine, the deflate stream is not
    result = skipped(normalize_image(bytes(data)))
    assert result.reason.startswith("cannot decode: ")
    assert len(result.reason) > len("cannot decode: ")


def test_garbage_after_a_png_signature_is_refused() -> None:
    result = skipped(normalize_image(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64))
    assert result.reason.startswith("cannot decode")


# --- normalization --------------------------------------------------------------------


def test_exif_orientation_is_applied_and_metadata_stripped() -> None:
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise to display
    exif[0x010F] = "SecretCam"  # Make
    source = Image.new("RGB", (200, 100), "white")
    ImageDraw.Draw(source).rectangle((0, 0, 49, 99), fill="red")  # red on the left edge
    data = encode(source, "JPEG", exif=exif.tobytes(), quality=95, icc_profile=b"fake-icc" * 8)

    result = normalized(normalize_image(data))

    assert (result.width, result.height) == (100, 200)
    assert (result.original_width, result.original_height) == (100, 200)
    image = reopen(result)
    assert image.size == (100, 200)
    # Rotating clockwise moves the left edge to the top.
    top_r, top_g, _ = image.convert("RGB").getpixel((50, 10))  # type: ignore[misc]
    bottom = image.convert("RGB").getpixel((50, 190))
    assert top_r > 200 and top_g < 80
    assert bottom == pytest.approx((255, 255, 255), abs=20)
    assert len(image.getexif()) == 0
    assert b"SecretCam" not in result.data
    assert "exif" not in image.info and "icc_profile" not in image.info


def test_large_photo_is_downscaled_to_1024_as_jpeg() -> None:
    data = photo(4000, 3000)
    result = normalized(normalize_image(data))
    assert result.media_type == "image/jpeg"
    assert (result.width, result.height) == (1024, 768)
    assert (result.original_width, result.original_height) == (4000, 3000)
    assert result.sha256 == hashlib.sha256(data).hexdigest()
    image = reopen(result)
    assert image.format == "JPEG"
    assert image.size == (1024, 768)
    assert "progressive" not in image.info
    assert len(result.data) < len(data)


def test_custom_max_side_and_no_upscaling() -> None:
    assert (normalized(normalize_image(photo(3000, 1500), max_side=1568)).width) == 1568
    small = normalized(normalize_image(photo(300, 200)))
    assert (small.width, small.height) == (300, 200)


def test_flat_colour_diagram_becomes_png() -> None:
    result = normalized(normalize_image(diagram(1600, 1000)))
    assert result.media_type == "image/png"
    assert (result.width, result.height) == (1024, 640)
    image = reopen(result)
    assert image.format == "PNG"
    assert image.mode == "RGB"


def test_greyscale_photo_stays_jpeg_despite_few_colours() -> None:
    grey = Image.open(io.BytesIO(photo(600, 400))).convert("L")
    result = normalized(normalize_image(encode(grey, "PNG")))
    assert result.media_type == "image/jpeg"
    assert reopen(result).mode == "RGB"


def test_rgba_is_flattened_onto_white() -> None:
    image = Image.new("RGBA", (200, 200), (0, 0, 0, 0))
    ImageDraw.Draw(image).rectangle((0, 0, 99, 199), fill=(0, 0, 255, 255))
    result = normalized(normalize_image(encode(image, "PNG")))
    out = reopen(result)
    assert out.mode == "RGB"
    assert out.getpixel((150, 100)) == (255, 255, 255)
    assert out.getpixel((50, 100)) == (0, 0, 255)


def test_palette_png_with_transparency_is_flattened_onto_white() -> None:
    image = Image.new("P", (150, 150), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    ImageDraw.Draw(image).rectangle((0, 0, 74, 149), fill=1)
    out = reopen(normalized(normalize_image(encode(image, "PNG", transparency=0))))
    assert out.getpixel((120, 75)) == (255, 255, 255)
    assert out.getpixel((20, 75)) == (255, 0, 0)


def test_animated_gif_yields_its_first_frame() -> None:
    frames = [Image.new("RGB", (160, 120), colour) for colour in ("red", "lime", "blue")]
    data = encode(frames[0], "GIF", save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert getattr(Image.open(io.BytesIO(data)), "n_frames", 1) == 3

    out = reopen(normalized(normalize_image(data)))
    assert getattr(out, "n_frames", 1) == 1
    assert not getattr(out, "is_animated", False)
    assert out.convert("RGB").getpixel((80, 60)) == (255, 0, 0)


def test_sixteen_bit_greyscale_png_is_not_clipped_to_white() -> None:
    image = Image.new("I;16", (200, 200), 0x4000)  # a quarter of full scale: dark grey
    out = reopen(normalized(normalize_image(encode(image, "PNG"))))
    red, green, blue = out.convert("RGB").getpixel((100, 100))  # type: ignore[misc]
    assert red == green == blue
    assert 50 <= red <= 80


def test_output_never_carries_metadata() -> None:
    exif = Image.Exif()
    exif[0x0131] = "Software that leaks"
    sources = [
        photo(1200, 900, "JPEG", exif=exif.tobytes(), comment=b"private comment"),
        photo(400, 300, "WEBP", exif=exif.tobytes()),
        photo(400, 300, "PNG", exif=exif.tobytes()),
    ]
    for source in sources:
        result = normalized(normalize_image(source))
        image = reopen(result)
        assert len(image.getexif()) == 0
        assert not {"exif", "icc_profile", "xmp", "comment"} & set(image.info)
        assert b"leaks" not in result.data


def test_output_is_deterministic() -> None:
    data = photo(1500, 1000)
    assert normalize_image(data) == normalize_image(data)


# --- one message ----------------------------------------------------------------------


def test_duplicates_and_recent_logos_are_skipped() -> None:
    logo = photo(300, 300, "PNG")
    chart = diagram()
    holiday = photo(800, 600)
    candidates = [candidate(logo, inline=True), candidate(chart), candidate(chart)]
    candidates.append(candidate(holiday))

    kept, skipped_images = select_images(
        candidates, recent_hashes=frozenset({hashlib.sha256(logo).hexdigest()})
    )

    assert [k.sha256 for k in kept] == [candidates[1].sha256, candidates[3].sha256]
    assert [(s.sha256, s.reason) for s in skipped_images] == [
        (candidates[0].sha256, "seen recently from this sender (logo)"),
        (candidates[2].sha256, "duplicate of an earlier image"),
    ]


def test_cap_keeps_the_first_images_in_document_order() -> None:
    pixel = encode(Image.new("RGB", (1, 1)), "GIF")
    images = [photo(200 + 10 * i, 200) for i in range(6)]
    candidates = [candidate(images[0]), candidate(pixel)] + [candidate(d) for d in images[1:]]

    kept, skipped_images = select_images(candidates, cap=4)

    assert [k.width for k in kept] == [200, 210, 220, 230]
    reasons = [(s.sha256, s.reason) for s in skipped_images]
    assert reasons == [
        (candidates[1].sha256, "tracking pixel 1x1"),
        (candidates[5].sha256, "over the per-message cap of 4"),
        (candidates[6].sha256, "over the per-message cap of 4"),
    ]
    # Every candidate is accounted for exactly once.
    assert len(kept) + len(skipped_images) == len(candidates)


def test_broken_image_does_not_use_up_the_cap() -> None:
    good = [photo(200 + 10 * i, 200) for i in range(2)]
    broken = photo(500, 400)[:900]
    kept, skipped_images = select_images(
        [candidate(broken), candidate(good[0]), candidate(good[1])], cap=2
    )
    assert len(kept) == 2
    assert [s.reason for s in skipped_images] == ["truncated image"]


# --- token estimate -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("width", "height", "tokens"),
    [
        (1024, 1024, 765),  # scaled to 768x768: 4 tiles
        (2048, 4096, 1105),  # 1024x2048 -> 768x1536: 6 tiles
        (512, 512, 255),  # one tile, never upscaled
        (100, 100, 255),
        (4000, 3000, 765),  # 2048x1536 -> 1024x768: 4 tiles
        (3000, 2000, 1105),  # 2048x1365 -> 1152x768: 6 tiles
        (1024, 768, 765),  # short side already 768: 2x2 tiles
    ],
)
def test_estimate_image_tokens_matches_openai_tile_math(
    width: int, height: int, tokens: int
) -> None:
    assert estimate_image_tokens(width, height) == tokens


def test_normalizing_a_big_photo_saves_tokens() -> None:
    result = normalized(normalize_image(photo(3000, 2000)))
    before = estimate_image_tokens(result.original_width, result.original_height)
    after = estimate_image_tokens(result.width, result.height)
    assert after < before


def test_estimate_image_tokens_rejects_empty_sizes() -> None:
    with pytest.raises(ValueError, match="positive"):
        estimate_image_tokens(0, 10)
