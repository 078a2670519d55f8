"""Image normalization for the model: sniff, decode safely, drop decoration, resize, re-encode."""

from __future__ import annotations

import hashlib
import io
import math
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from PIL import Image, ImageOps, UnidentifiedImageError

# Banners, dividers and spacer strips are decoration; a photo or a screenshot is rarely
# more than 8 times as long as it is wide.
MAX_ASPECT_RATIO = 8.0

# Line art, diagrams and screenshots with flat fills have few distinct colours; JPEG smears
# their edges and text, PNG keeps them sharp and small. Photos have thousands of colours.
PNG_MAX_COLOURS = 256
FLAT_BACKGROUND_SHARE = 0.2
# Colours are counted on a nearest-neighbour sample of at most this side, so the count only
# sees colours that are really in the source (a smoothing resample would invent new ones).
_COLOUR_SAMPLE_SIDE = 256

JPEG_QUALITY = 80

# Above this a header is refused before decoding (40 MP RGBA is already ~160 MB in memory).
DEFAULT_MAX_PIXELS = 40_000_000

_EXIF_ORIENTATION = 0x0112

# Media type -> the one Pillow plugin allowed to open it. Restricting Image.open to the
# sniffed format keeps exotic decoders (EPS, FITS, ...) away from untrusted bytes.
_PLUGINS = {
    "image/jpeg": "JPEG",
    "image/png": "PNG",
    "image/gif": "GIF",
    "image/webp": "WEBP",
    "image/bmp": "BMP",
    "image/tiff": "TIFF",
    "image/avif": "AVIF",
    "image/heic": "HEIF",  # only registered when pillow-heif is installed
}

_AVIF_BRANDS = frozenset({b"avif", b"avis"})
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
# Sizes of the known BMP info headers; "BM" alone is too weak a signature (text can start so).
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})


@dataclass(frozen=True)
class ImageCandidate:
    """One image-like attachment or inline part, as the parser hands it over."""

    data: bytes = field(repr=False)
    sha256: str
    declared_type: str
    content_id: str | None
    inline: bool
    filename: str | None


@dataclass(frozen=True)
class NormalizedImage:
    """An image ready for a model; original_* are in display orientation (EXIF applied)."""

    sha256: str
    media_type: str
    data: bytes = field(repr=False)
    width: int
    height: int
    original_width: int
    original_height: int


@dataclass(frozen=True)
class SkippedImage:
    """An image not sent to the model, with the reason shown to reviewers."""

    sha256: str
    reason: str


def sniff_image_type(data: bytes) -> str | None:
    """The image media type named by the magic bytes, or None; the declared type is ignored."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data[:6] in (b"GIF87a", b"GIF89a"):
        return "image/gif"
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "image/tiff"
    if data[:2] == b"BM" and int.from_bytes(data[14:18], "little") in _BMP_HEADER_SIZES:
        return "image/bmp"
    return _sniff_isobmff(data)


def _sniff_isobmff(data: bytes) -> str | None:
    """AVIF / HEIC share the ISO-BMFF 'ftyp' box; report them only if Pillow can open them."""
    if data[4:8] != b"ftyp":
        return None
    box_size = int.from_bytes(data[0:4], "big")
    brands = {data[8:12]}  # major brand, then compatible brands after the minor version
    brands.update(data[i : i + 4] for i in range(16, min(box_size, len(data)) - 3, 4))
    Image.init()  # plugins such as AVIF register lazily; cheap after the first call
    if brands & _AVIF_BRANDS and "AVIF" in Image.OPEN:
        return "image/avif"
    if brands & _HEIC_BRANDS and "HEIF" in Image.OPEN:
        return "image/heic"
    return None


def normalize_image(
    data: bytes, *, max_side: int = 1024, min_side: int = 100, max_pixels: int = DEFAULT_MAX_PIXELS
) -> NormalizedImage | SkippedImage:
    """Check, decode and re-encode one image, or say why it is not worth sending."""
    sha256 = hashlib.sha256(data).hexdigest()
    opened = _open_checked(data, sha256, min_side=min_side, max_pixels=max_pixels)
    if isinstance(opened, SkippedImage):
        return opened
    return _render(opened, sha256, max_side=max_side)


def select_images(
    candidates: Sequence[ImageCandidate],
    *,
    max_side: int = 1024,
    min_side: int = 100,
    cap: int = 4,
    recent_hashes: frozenset[str] = frozenset(),
) -> tuple[list[NormalizedImage], list[SkippedImage]]:
    """The images of one message worth sending, in document order, and the rest with reasons."""
    kept: list[NormalizedImage] = []
    skipped: list[SkippedImage] = []
    seen: set[str] = set()
    for candidate in candidates:
        result = _select_one(candidate, seen, recent_hashes, min_side=min_side)
        seen.add(candidate.sha256)
        if isinstance(result, SkippedImage):
            skipped.append(result)
        elif len(kept) >= cap:
            # The cap comes after the cheap header checks, so a tracking pixel past the cap is
            # reported as a pixel, and before decoding, so no work is spent on what is dropped.
            result.close()
            skipped.append(SkippedImage(candidate.sha256, f"over the per-message cap of {cap}"))
        else:
            rendered = _render(result, candidate.sha256, max_side=max_side)
            if isinstance(rendered, NormalizedImage):
                kept.append(rendered)
            else:
                skipped.append(rendered)
    return kept, skipped


def _select_one(
    candidate: ImageCandidate, seen: set[str], recent_hashes: frozenset[str], *, min_side: int
) -> Image.Image | SkippedImage:
    if candidate.sha256 in seen:
        return SkippedImage(candidate.sha256, "duplicate of an earlier image")
    if candidate.sha256 in recent_hashes:
        return SkippedImage(candidate.sha256, "seen recently from this sender (logo)")
    return _open_checked(candidate.data, candidate.sha256, min_side=min_side)


def _open_checked(
    data: bytes, sha256: str, *, min_side: int, max_pixels: int = DEFAULT_MAX_PIXELS
) -> Image.Image | SkippedImage:
    """Open lazily (header only) and refuse bombs, pixels and strips before any decoding."""
    media_type = sniff_image_type(data)
    if media_type is None:
        return SkippedImage(sha256, "not an image")
    try:
        with _bomb_warnings_as_errors():
            image = Image.open(io.BytesIO(data), formats=[_PLUGINS[media_type]])
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        return SkippedImage(sha256, "decompression bomb: over Pillow's pixel limit")
    except UnidentifiedImageError:
        return SkippedImage(sha256, "cannot decode: unrecognised or corrupt header")
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        return SkippedImage(sha256, _decode_failure(exc))
    reason = _header_reason(*image.size, min_side=min_side, max_pixels=max_pixels)
    if reason is not None:
        image.close()
        return SkippedImage(sha256, reason)
    return image


def _header_reason(width: int, height: int, *, min_side: int, max_pixels: int) -> str | None:
    if width * height > max_pixels:
        return f"decompression bomb: {width}x{height}"
    if min(width, height) < min_side:
        # Tracking pixels, spacer gifs and signature icons carry nothing a model can read.
        kind = "tracking pixel" if width * height <= 4 else "too small:"
        return f"{kind} {width}x{height}"
    if max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        return f"extreme aspect ratio (banner or divider): {width}x{height}"
    return None


@contextmanager
def _bomb_warnings_as_errors() -> Iterator[None]:
    """Turn Pillow's bomb warning into an error for this block only (no global setting).

    catch_warnings swaps the process-wide filter list while active; a worker decodes one
    image at a time per process, so the short window is acceptable.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        yield


def _decode_failure(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    if "truncated" in text.lower():
        return "truncated image"
    return f"cannot decode: {text[:120]}"


def _render(image: Image.Image, sha256: str, *, max_side: int) -> NormalizedImage | SkippedImage:
    """Decode the first frame, orient, flatten, shrink and re-encode without any metadata."""
    with image:
        header_size = image.size  # before draft(), which shrinks .size for JPEG
        try:
            with _bomb_warnings_as_errors():
                # JPEG can decode at 1/2, 1/4 or 1/8 scale for free; draft never goes below
                # the requested size, so the LANCZOS pass below still sets the final size.
                image.draft(None, (max_side, max_side))
                image.load()  # an animated image stays on its first frame
                sideways = image.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8)
                oriented = ImageOps.exif_transpose(image)
        except (Image.DecompressionBombError, Image.DecompressionBombWarning):
            return SkippedImage(sha256, "decompression bomb: over Pillow's pixel limit")
        except (OSError, SyntaxError, ValueError, EOFError) as exc:
            return SkippedImage(sha256, _decode_failure(exc))
    rgb = _flatten_to_rgb(oriented)
    use_png = _few_colours(rgb)
    resized = _downscale(rgb, max_side)
    media_type, encoded = _encode(resized, png=use_png)
    return NormalizedImage(
        sha256=sha256,
        media_type=media_type,
        data=encoded,
        width=resized.width,
        height=resized.height,
        original_width=header_size[1] if sideways else header_size[0],
        original_height=header_size[0] if sideways else header_size[1],
    )


def _flatten_to_rgb(image: Image.Image) -> Image.Image:
    """RGB with any transparency composited onto white, as a mail client would show it."""
    if image.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        # 16-bit greyscale: a plain convert would clip everything above 255 to white.
        image = image.convert("I").point(lambda value: value * (1 / 256)).convert("L")
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in image.info
    if not has_alpha:
        return image.convert("RGB")
    rgba = image.convert("RGBA")
    background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
    return Image.alpha_composite(background, rgba).convert("RGB")


def _few_colours(image: Image.Image) -> bool:
    """True for line art, diagrams and flat screenshots, which PNG keeps sharp and small.

    The test: at most PNG_MAX_COLOURS distinct colours, one of which (the background) covers
    at least FLAT_BACKGROUND_SHARE of the picture. The second half keeps greyscale and
    dithered photos, which also have few colours but no flat background, on JPEG.
    """
    sample = image.copy()
    sample.thumbnail((_COLOUR_SAMPLE_SIDE, _COLOUR_SAMPLE_SIDE), Image.Resampling.NEAREST)
    colours = sample.getcolors(maxcolors=PNG_MAX_COLOURS)
    if colours is None:
        return False
    background = max(count for count, _ in colours)
    return background >= FLAT_BACKGROUND_SHARE * sample.width * sample.height


def _downscale(image: Image.Image, max_side: int) -> Image.Image:
    """Shrink so the long side is max_side; never enlarge."""
    long_side = max(image.size)
    if long_side <= max_side:
        return image
    scale = max_side / long_side
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def _encode(image: Image.Image, *, png: bool) -> tuple[str, bytes]:
    """Re-encode with no EXIF, ICC, XMP or comments: only the pixels leave this module."""
    # Savers copy ICC profiles and comments from .info by default; an empty dict carries none.
    image.info = {}
    buffer = io.BytesIO()
    if png:
        image.save(buffer, format="PNG", optimize=True)
        return "image/png", buffer.getvalue()
    image.save(buffer, format="JPEG", quality=JPEG_QUALITY, optimize=True, progressive=False)
    return "image/jpeg", buffer.getvalue()


def estimate_image_tokens(width: int, height: int) -> int:
    """OpenAI detail=high cost: fit in 2048x2048, short side to 768, 85 + 170 per 512px tile."""
    if width <= 0 or height <= 0:
        raise ValueError(f"image size must be positive, got {width}x{height}")
    scaled_w, scaled_h = float(width), float(height)
    if max(scaled_w, scaled_h) > 2048:
        factor = 2048 / max(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    if min(scaled_w, scaled_h) > 768:
        factor = 768 / min(scaled_w, scaled_h)
        scaled_w, scaled_h = scaled_w * factor, scaled_h * factor
    tiles = math.ceil(round(scaled_w) / 512) * math.ceil(round(scaled_h) / 512)
    return 85 + 170 * tiles
