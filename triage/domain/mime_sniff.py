"""Names a file's type from its first bytes, because the declared Content-Type is often wrong."""

from __future__ import annotations

# (prefix, offset, type); checked in order, first match wins.
_MAGIC: tuple[tuple[bytes, int, str], ...] = (
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"II*\x00", 0, "image/tiff"),
    (b"MM\x00*", 0, "image/tiff"),
    (b"\x00\x00\x01\x00", 0, "image/x-icon"),
    (b"%PDF-", 0, "application/pdf"),
    (b"PK\x03\x04", 0, "application/zip"),
    (b"PK\x05\x06", 0, "application/zip"),
    (b"PK\x07\x08", 0, "application/zip"),
    (b"\x1f\x8b", 0, "application/gzip"),
    (b"7z\xbc\xaf\x27\x1c", 0, "application/x-7z-compressed"),
    (b"Rar!\x1a\x07", 0, "application/vnd.rar"),
    (b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1", 0, "application/x-ole-storage"),
    (b"\x78\x9f\x3e\x22", 0, "application/ms-tnef"),
    (b"{\\rtf", 0, "text/rtf"),
)
# ISO-BMFF brands (bytes 8-12 after "ftyp") for the HEIF family.
_HEIC_BRANDS = frozenset({b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis"})
_AVIF_BRANDS = frozenset({b"avif", b"avis"})
# BMP info-header sizes that real encoders write; "BM" alone is too weak a signal.
_BMP_HEADER_SIZES = frozenset({12, 16, 40, 52, 56, 64, 108, 124})
_PNM = {b"P1": "pbm", b"P4": "pbm", b"P2": "pgm", b"P5": "pgm", b"P3": "ppm", b"P6": "ppm"}


def sniff_type(data: bytes) -> str | None:
    """The MIME type that the bytes themselves show, or None when they show nothing known."""
    head = data[:64]
    for prefix, offset, mime in _MAGIC:
        if head.startswith(prefix, offset):
            return mime
    return _sniff_containers(head) or _sniff_loose(data)


def _sniff_containers(head: bytes) -> str | None:
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        return "image/webp"
    if head[4:8] == b"ftyp":
        return _heif_type(head)
    bmp_info_size = int.from_bytes(head[14:18], "little")
    if head.startswith(b"BM") and len(head) >= 18 and bmp_info_size in _BMP_HEADER_SIZES:
        return "image/bmp"
    if head.startswith(b"BZh") and head[3:4].isdigit() and head[3:4] != b"0":
        return "application/x-bzip2"
    if head[:2] in _PNM and head[2:3] in (b" ", b"\n", b"\r", b"\t"):
        return f"image/x-portable-{_PNM[head[:2]]}"
    return None


def _heif_type(head: bytes) -> str | None:
    major = head[8:12]
    box_end = min(int.from_bytes(head[0:4], "big"), len(head))
    brands = {major} | {head[i : i + 4] for i in range(16, box_end - 3, 4)}
    if brands & _AVIF_BRANDS:
        return "image/avif"
    if brands & _HEIC_BRANDS:
        return "image/heic"
    if b"mif1" in brands or b"msf1" in brands:
        return "image/heif"
    return None


def _sniff_loose(data: bytes) -> str | None:
    # PDF readers accept a header anywhere in the first kilobyte, so senders rely on it.
    if b"%PDF-" in data[:1024]:
        return "application/pdf"
    return None
