"""A corpus of hostile, broken and unusual image files, generated locally with Pillow and numpy.

People upload anything: phone photos, screenshots, documents renamed to .jpg, huge dermatoscope
exports, broken files. Each case says what `skin_demo.images.load_image` must do with the file:
"ok" (optionally with the same pixels as another, plainer file of the corpus) or "error" with a
phrase the message for the person must contain.

    python tools/make_bad_images.py OUT_DIR
"""

from __future__ import annotations

import io
import struct
import sys
import zipfile
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageCms, ImageOps

WIDTH, HEIGHT = 240, 180
FORTY_MEGAPIXELS = "forty_megapixels.jpg"  # 7296x5472, a dermatoscope export; also used for the memory check


@dataclass(frozen=True)
class Case:
    name: str  # file name; the extension is only what the uploader claims
    expect: str  # "ok" or "error"
    message: str = ""  # for errors: a phrase the message must contain
    same_as: str = ""  # for ok: a corpus file whose decoded pixels this one must reproduce
    tolerance: float = 0.0  # mean absolute difference (0-255) allowed against same_as, for lossy codecs


def _lesion() -> Image.Image:
    """A smooth synthetic lesion photo whose colours change differently along each axis, so any flip or turn shows."""
    y, x = np.mgrid[0:HEIGHT, 0:WIDTH].astype("float32")
    x, y = x / WIDTH, y / HEIGHT
    rgb = np.stack([190 + 50 * x, 130 + 70 * y, 110 + 40 * x * y], axis=-1)
    blob = ((x - 0.35) / 0.2) ** 2 + ((y - 0.4) / 0.25) ** 2 < 1
    rgb[blob] *= 0.45
    return Image.fromarray(rgb.astype("uint8"))


def _gray() -> Image.Image:
    """The lesion in grey spanning exactly 0..255, so a contrast-stretched deep image maps back onto it."""
    return ImageOps.autocontrast(_lesion().convert("L"))


def _translucent() -> Image.Image:
    """The lesion with alpha fading out to the left and a fully transparent border."""
    alpha = np.tile(np.linspace(0, 255, WIDTH, dtype="float32"), (HEIGHT, 1)).astype("uint8")
    alpha[:10], alpha[-10:] = 0, 0
    image = _lesion().convert("RGBA")
    image.putalpha(Image.fromarray(alpha))
    return image


def _over_white(image: Image.Image) -> Image.Image:
    rgba = image.convert("RGBA")
    return Image.alpha_composite(Image.new("RGBA", rgba.size, "white"), rgba).convert("RGB")


def _encode(image: Image.Image, format: str, **params) -> bytes:
    """The file bytes; saves copies because Pillow keeps encoder settings on a saved image."""
    if "append_images" in params:
        params["append_images"] = [frame.copy() for frame in params["append_images"]]
    buffer = io.BytesIO()
    image.copy().save(buffer, format, **params)
    return buffer.getvalue()


def _later_frames() -> list[Image.Image]:
    """Frames after the lesion in animations, clearly different so that showing one instead is caught."""
    return [ImageOps.invert(_lesion()), _lesion().transpose(Image.Transpose.ROTATE_180)]


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png(width: int, height: int, bit_depth: int, colour_type: int, rows: bytes) -> bytes:
    """A PNG written by hand, for what Pillow will not write (huge declared sizes, 48-bit colour)."""
    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", header)
            + _png_chunk(b"IDAT", zlib.compress(rows)) + _png_chunk(b"IEND", b""))


def _rgb48_png() -> bytes:
    pixels = np.asarray(_lesion()).astype(">u2") * 257
    rows = b"".join(b"\x00" + row.tobytes() for row in pixels)
    return _png(WIDTH, HEIGHT, 16, 2, rows)


def _jpeg_declaring(width: int, height: int) -> bytes:
    """A small JPEG whose frame header claims another size."""
    data = bytearray(_encode(_lesion(), "JPEG"))
    frame = data.find(b"\xff\xc0")
    data[frame + 5:frame + 9] = struct.pack(">HH", height, width)
    return bytes(data)


def _png_with_broken_crc(chunk: bytes) -> bytes:
    data = bytearray(_encode(_lesion(), "PNG"))
    start = data.find(chunk)
    length = struct.unpack(">I", data[start - 4:start])[0]
    data[start + 4 + length] ^= 0xFF
    return bytes(data)


def _scrambled_scan_jpeg() -> bytes:
    """Bit errors inside the compressed data: decoders show smeared blocks rather than fail."""
    data = bytearray(_encode(_lesion(), "JPEG", quality=90))
    scan = data.find(b"\xff\xda")
    for offset in range(scan + 200, len(data) - 200, 97):
        data[offset] = 0x55
    return bytes(data)


def _with_orientation(orientation: int) -> bytes:
    """The lesion stored so that applying EXIF `orientation` shows it upright."""
    stored = {
        2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
        5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90, 7: Image.Transpose.TRANSVERSE,
        8: Image.Transpose.ROTATE_270,
    }
    image = _lesion()
    if orientation in stored:
        image = image.transpose(stored[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    return _encode(image, "JPEG", quality=95, exif=exif)


def _palette_with_transparency() -> Image.Image:
    """A 64-colour palette image whose last colour is transparent, painted as a band on the left."""
    palette_image = _lesion().quantize(64)
    pixels = np.asarray(palette_image).copy()
    pixels[:, :40] = 63
    image = Image.fromarray(pixels, "P")
    image.putpalette(palette_image.getpalette())
    image.info["transparency"] = 63
    return image


def _zip_archive() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("lesion.jpg", _encode(_lesion(), "JPEG"))
    return buffer.getvalue()


def _photo() -> bytes:
    return _encode(_lesion(), "JPEG", quality=95)


def _lab() -> Image.Image:
    to_lab = ImageCms.buildTransform(ImageCms.createProfile("sRGB"), ImageCms.createProfile("LAB"), "RGB", "LAB")
    return ImageCms.applyTransform(_lesion(), to_lab)


def _lab_profile() -> bytes:
    return ImageCms.ImageCmsProfile(ImageCms.createProfile("LAB")).tobytes()


def _deep_gray(mode: str) -> Image.Image:
    """The grey image as 16-bit (either byte order), 32-bit integer or float, each spanning a different range."""
    gray = np.asarray(_gray())
    if mode == "I;16B":
        return Image.frombytes(mode, _gray().size, (gray.astype(">u2") * 257).tobytes())
    arrays = {"I;16": gray.astype("uint16") * 257, "I": gray.astype("int32") * 1000 - 50_000, "F": gray / np.float32(255)}
    return Image.fromarray(arrays[mode])


def _float_with_nan() -> Image.Image:
    array = np.asarray(_deep_gray("F")).copy()
    array[0, :3] = [np.nan, np.inf, -np.inf]
    return Image.fromarray(array)


def _corpus() -> list[tuple[Case, Callable[[], bytes]]]:
    """Each case with the function that writes its bytes (run only by make_corpus, so listing cases is free)."""
    ok, error = "ok", "error"
    return [
        # plain references the odd variants are compared with
        (Case("reference.png", ok), lambda: _encode(_lesion(), "PNG")),
        (Case("gray.png", ok), lambda: _encode(_gray(), "PNG")),
        (Case("translucent_over_white.png", ok), lambda: _encode(_over_white(_translucent()), "PNG")),
        (Case("gray_translucent_over_white.png", ok),
         lambda: _encode(_over_white(_translucent().convert("LA")).convert("L"), "PNG")),
        (Case("palette_transparent_over_white.png", ok), lambda: _encode(_over_white(_palette_with_transparency()), "PNG")),
        (Case("photo.jpg", ok, same_as="reference.png", tolerance=2), _photo),
        # formats and encodings
        (Case("progressive.jpg", ok, same_as="reference.png", tolerance=2),
         lambda: _encode(_lesion(), "JPEG", quality=95, progressive=True)),
        (Case("ycbcr.jpg", ok, same_as="reference.png", tolerance=3),
         lambda: _encode(_lesion().convert("YCbCr"), "JPEG", quality=95)),
        (Case("cmyk.jpg", ok, same_as="reference.png", tolerance=3),
         lambda: _encode(_lesion().convert("CMYK"), "JPEG", quality=95)),
        (Case("cmyk.tiff", ok, same_as="reference.png", tolerance=1), lambda: _encode(_lesion().convert("CMYK"), "TIFF")),
        (Case("lab.tiff", ok, same_as="reference.png", tolerance=2), lambda: _encode(_lab(), "TIFF")),
        (Case("lzw.tiff", ok, same_as="reference.png"), lambda: _encode(_lesion(), "TIFF", compression="tiff_lzw")),
        (Case("lossy.webp", ok, same_as="reference.png", tolerance=4), lambda: _encode(_lesion(), "WEBP", quality=90)),
        (Case("translucent.webp", ok, same_as="translucent_over_white.png"),
         lambda: _encode(_translucent(), "WEBP", lossless=True)),
        (Case("photo.avif", ok, same_as="reference.png", tolerance=4), lambda: _encode(_lesion(), "AVIF", quality=90)),
        (Case("bitmap.bmp", ok, same_as="reference.png"), lambda: _encode(_lesion(), "BMP")),
        (Case("icon.ico", ok), lambda: _encode(_lesion(), "ICO")),
        (Case("pixmap.ppm", ok, same_as="reference.png"), lambda: _encode(_lesion(), "PPM")),
        (Case("graymap.pgm", ok, same_as="gray.png"), lambda: _encode(_gray(), "PPM")),
        (Case("stereo.mpo", ok, same_as="reference.png", tolerance=2),
         lambda: _encode(_lesion(), "MPO", quality=95, save_all=True, append_images=_later_frames()[:1])),
        (Case("jpeg_named.png", ok, same_as="photo.jpg"), _photo),
        (Case("png_named.jpg", ok, same_as="reference.png"), lambda: _encode(_lesion(), "PNG")),
        (Case("garbage_appended.jpg", ok, same_as="photo.jpg"), lambda: _photo() + bytes(range(256)) * 40),
        (Case("icc_lab_profile.jpg", ok, same_as="photo.jpg"),
         lambda: _encode(_lesion(), "JPEG", quality=95, icc_profile=_lab_profile())),
        (Case("icc_garbage.jpg", ok, same_as="photo.jpg"),
         lambda: _encode(_lesion(), "JPEG", quality=95, icc_profile=b"not a profile" * 50)),
        (Case("exif_garbage.jpg", ok, same_as="photo.jpg"),
         lambda: _encode(_lesion(), "JPEG", quality=95, exif=b"Exif\x00\x00MM\x00*garbage")),
        (Case("idat_bad_crc.png", ok, same_as="reference.png"), lambda: _png_with_broken_crc(b"IDAT")),
        (Case("scrambled_scan.jpg", ok), _scrambled_scan_jpeg),
        # EXIF orientation: every stored variant must come out upright
        *[(Case(f"exif_orientation_{n}.jpg", ok, same_as="reference.png", tolerance=2),
           lambda n=n: _with_orientation(n)) for n in range(1, 9)],
        (Case("exif_orientation_invalid.jpg", ok, same_as="reference.png", tolerance=2), lambda: _with_orientation(42)),
        # modes: transparency over white, deep and float images stretched to 8 bit
        (Case("translucent.png", ok, same_as="translucent_over_white.png"), lambda: _encode(_translucent(), "PNG")),
        (Case("translucent_large.png", ok), lambda: _encode(_translucent().resize((2400, 1800)), "PNG")),
        (Case("gray_alpha.png", ok, same_as="gray_translucent_over_white.png"),
         lambda: _encode(_translucent().convert("LA"), "PNG")),
        (Case("palette_transparent.png", ok, same_as="palette_transparent_over_white.png"),
         lambda: _encode(_palette_with_transparency(), "PNG")),
        (Case("palette_transparent.gif", ok, same_as="palette_transparent_over_white.png"),
         lambda: _encode(_palette_with_transparency(), "GIF")),
        (Case("bilevel.png", ok), lambda: _encode(_lesion().convert("1"), "PNG")),
        (Case("gray16.png", ok, same_as="gray.png"), lambda: _encode(_deep_gray("I;16"), "PNG")),
        (Case("gray16_large.png", ok), lambda: _encode(_deep_gray("I;16").resize((2400, 1800)), "PNG")),
        (Case("gray16.tiff", ok, same_as="gray.png"), lambda: _encode(_deep_gray("I;16"), "TIFF")),
        (Case("gray16_big_endian.tiff", ok, same_as="gray.png"), lambda: _encode(_deep_gray("I;16B"), "TIFF")),
        (Case("rgb48.png", ok, same_as="reference.png"), _rgb48_png),
        (Case("int32.tiff", ok, same_as="gray.png"), lambda: _encode(_deep_gray("I"), "TIFF")),
        (Case("float.tiff", ok, same_as="gray.png", tolerance=0.5), lambda: _encode(_deep_gray("F"), "TIFF")),
        (Case("float_with_nan.tiff", ok, same_as="gray.png", tolerance=0.1), lambda: _encode(_float_with_nan(), "TIFF")),
        # several frames: the first one counts
        (Case("animated.gif", ok, same_as="reference.png", tolerance=12),
         lambda: _encode(_lesion(), "GIF", save_all=True, append_images=_later_frames(), duration=100)),
        (Case("animated.png", ok, same_as="reference.png"),
         lambda: _encode(_lesion(), "PNG", save_all=True, append_images=_later_frames(), duration=100)),
        (Case("animated.webp", ok, same_as="reference.png"),
         lambda: _encode(_lesion(), "WEBP", save_all=True, append_images=_later_frames(), lossless=True)),
        (Case("multipage.tiff", ok, same_as="reference.png"),
         lambda: _encode(_lesion(), "TIFF", save_all=True, append_images=_later_frames())),
        # sizes
        (Case(FORTY_MEGAPIXELS, ok),
         lambda: _encode(_lesion().resize((7296, 5472), Image.Resampling.BILINEAR), "JPEG", quality=85)),
        (Case("panorama.jpg", ok), lambda: _encode(_lesion().resize((12000, 1500)), "JPEG")),
        (Case("tiny_8x8.png", error, "too small"), lambda: _encode(_lesion().resize((8, 8)), "PNG")),
        (Case("sliver_1x1000.png", error, "too small"), lambda: _encode(_lesion().resize((1, 1000)), "PNG")),
        (Case("strip_4000x40.png", error, "long and narrow"), lambda: _encode(_lesion().resize((4000, 40)), "PNG")),
        (Case("bomb.png", error, "too many pixels"), lambda: _png(100_000, 100_000, 8, 2, b"\x00" * 64)),
        (Case("bomb_150_megapixels.png", error, "too many pixels"), lambda: _png(12_500, 12_000, 8, 2, b"\x00" * 64)),
        (Case("bomb_60_megapixels.png", error, "too many pixels"), lambda: _png(8_000, 7_500, 8, 2, b"\x00" * 64)),
        (Case("bomb.jpg", error, "too many pixels"), lambda: _jpeg_declaring(60_000, 60_000)),
        (Case("huge_file.jpg", error, "too large"), lambda: _photo() + bytes(65 * 2**20)),
        # not images, or broken ones
        (Case("empty.jpg", error, "empty"), lambda: b""),
        (Case("truncated.jpg", error, "damaged"), lambda: _photo()[:5000]),
        (Case("truncated.png", error, "damaged"), lambda: _encode(_lesion(), "PNG")[:3000]),
        (Case("header_only.jpg", error, "damaged"), lambda: _photo()[:40]),
        (Case("ihdr_bad_crc.png", error, "damaged"), lambda: _png_with_broken_crc(b"IHDR")),
        (Case("random_bytes.jpg", error, "not a readable image"), lambda: np.random.default_rng(0).bytes(20_000)),
        (Case("notes.jpg", error, "not a readable image"), lambda: b"Patient notes: lesion on left forearm.\n" * 20),
        (Case("page.jpg", error, "web page"),
         lambda: b"<!DOCTYPE html>\n<html><body><img src='lesion.jpg'></body></html>\n"),
        (Case("drawing.svg", error, "SVG"),
         lambda: b'<?xml version="1.0"?>\n<svg xmlns="http://www.w3.org/2000/svg" width="200" height="200">'
                 b'<circle cx="100" cy="100" r="60" fill="brown"/></svg>\n'),
        (Case("document.jpg", error, "PDF"), lambda: _encode(_lesion(), "PDF")),
        (Case("archive.jpg", error, "ZIP"), _zip_archive),
        (Case("iphone.heic", error, "HEIC"),
         lambda: struct.pack(">I", 24) + b"ftypheic\x00\x00\x00\x00mif1heic" + bytes(2000)),
        (Case("lesion.jp2", error, "not supported"), lambda: _encode(_lesion(), "JPEG2000")),
    ]


CASES = [case for case, _ in _corpus()]


def make_corpus(out_dir) -> list[Case]:
    """Write every corpus file into out_dir and return the cases."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    for case, write in _corpus():
        (out_dir / case.name).write_bytes(write())
    return CASES


if __name__ == "__main__":
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    for case in make_corpus(sys.argv[1]):
        print(f"{case.expect:5}  {case.name}  {case.message}")
