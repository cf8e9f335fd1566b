"""The one image loader for UI, API, CLI and evaluation: bounded decoding and clear messages.

`load_image` turns anything a person may hand us (path, bytes, PIL image, array) into an RGB uint8
array or raises `ImageError` with a sentence fit to show them. `fit_to_input` is the one geometric
preprocessing step between such an array and a model's input; `fit_batch` applies it to a batch.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageFile, ImageOps

MAX_FILE_BYTES = 64 * 1024 * 1024
MAX_PIXELS = 120_000_000  # JPEGs decode at 1/2..1/8 scale, so a 100-megapixel photo costs little; bombs fail
MAX_FULL_DECODE_PIXELS = 50_000_000  # other formats decode every pixel: a 40-megapixel export still passes
MIN_SIDE = 32
WORKING_SIDE = 1024  # decoded images are reduced to this before anything else (the models need ~200 px)
MAX_ASPECT = WORKING_SIDE // MIN_SIDE  # so the reduced image keeps at least MIN_SIDE pixels a side
REDUCED_DECODE_FORMATS = {"JPEG", "MPO"}  # Pillow's draft mode: libjpeg decodes straight to a smaller scale
ALLOWED_FORMATS = {"JPEG", "MPO", "PNG", "GIF", "BMP", "TIFF", "WEBP", "AVIF", "PPM", "ICO"}
IMAGE_SIGNATURES = (b"\xff\xd8\xff", b"\x89PNG", b"GIF8", b"II*\x00", b"MM\x00*")  # JPEG, PNG, GIF, TIFF
HEIC_BRANDS = {b"heic", b"heix", b"hevc", b"heim", b"heis", b"mif1", b"msf1"}
TOO_MANY_PIXELS = (f"The image has too many pixels; the limit is {MAX_FULL_DECODE_PIXELS // 1_000_000} megapixels "
                   f"({MAX_PIXELS // 1_000_000} for JPEG photos).")

ImageFile.LOAD_TRUNCATED_IMAGES = False
Image.MAX_IMAGE_PIXELS = MAX_PIXELS


class ImageError(ValueError):
    """An input that cannot be classified; the message is meant for a person."""


def _open(source) -> Image.Image:
    if isinstance(source, Image.Image):
        return source.copy()  # load_image works in place; the caller's image stays as it was
    if isinstance(source, (str, Path)):
        path = Path(source)
        if path.is_dir():
            raise ImageError(f"{path.name} is a folder, not an image file.")
        if not path.is_file():
            raise ImageError(f"File not found: {path.name}.")
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise ImageError(f"The file is too large ({size / 2**20:.0f} MiB; the limit is {MAX_FILE_BYTES // 2**20} MiB).")
        data = path.read_bytes()
    elif isinstance(source, (bytes, bytearray)):
        data = bytes(source)
        if len(data) > MAX_FILE_BYTES:
            raise ImageError(f"The file is too large (the limit is {MAX_FILE_BYTES // 2**20} MiB).")
    else:
        raise ImageError(f"Unsupported input type {type(source).__name__}; give an image file.")
    if not data:
        raise ImageError("The file is empty.")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(TOO_MANY_PIXELS) from None
    except Exception:  # UnidentifiedImageError, or assorted errors from plugins on malformed headers
        raise _explain_open_failure(data) from None
    if image.format not in ALLOWED_FORMATS:
        raise ImageError(f"{image.format} files are not supported; use JPEG, PNG, TIFF, WebP, AVIF, BMP or GIF.")
    return image


def _explain_open_failure(data: bytes) -> ImageError:
    """Name what the file is when we can tell, so the person knows what to send instead."""
    if data.startswith(IMAGE_SIGNATURES):
        return ImageError("The image file is damaged or truncated and cannot be decoded.")
    if data[4:8] == b"ftyp" and data[8:12] in HEIC_BRANDS:
        return ImageError("HEIC photos (the iPhone default) are not supported; share or export the photo as JPEG.")
    head = data[:512].lstrip().lower()
    if head.startswith(b"%pdf"):
        return ImageError("This is a PDF document, not an image.")
    if head.startswith(b"pk\x03\x04"):
        return ImageError("This is a ZIP archive (or an Office document), not an image.")
    if b"<svg" in head:
        return ImageError("SVG vector drawings are not supported; export the image as PNG or JPEG.")
    if head.startswith((b"<!doctype html", b"<html")):
        return ImageError("This is a web page (HTML), not an image.")
    return ImageError("The file is not a readable image.")


def _shrink(image: Image.Image) -> Image.Image:
    """Reduce to WORKING_SIDE before any colour conversion, so no conversion touches every pixel of a big image."""
    if image.mode in ("1", "P"):  # Pillow resizes these by nearest neighbour only; P keeps its transparency as alpha
        image = image.convert("RGBA" if image.mode == "P" else "L")
    image.thumbnail((WORKING_SIDE, WORKING_SIDE), Image.Resampling.LANCZOS)
    return image


def _to_rgb(image: Image.Image) -> Image.Image:
    """Every Pillow mode but palette to RGB: transparency over white, 16-bit and float scaled to 8 bit, CMYK converted."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        array = np.nan_to_num(np.asarray(image, dtype="float64"), nan=0.0, posinf=0.0, neginf=0.0)
        low, high = float(array.min()), float(array.max())
        scaled = (array - low) / (high - low) * 255 if high > low else np.zeros_like(array)
        return Image.fromarray(scaled.astype("uint8")).convert("RGB")
    if image.mode in ("RGBA", "LA", "PA"):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")


def load_image(source) -> np.ndarray:
    """An RGB uint8 array (height, width, 3), EXIF-oriented, first frame, at most WORKING_SIDE a side."""
    if isinstance(source, np.ndarray):
        return _array_to_rgb(source)
    image = _open(source)
    width, height = image.size
    reduced_decode = image.format in REDUCED_DECODE_FORMATS
    if width * height > (MAX_PIXELS if reduced_decode else MAX_FULL_DECODE_PIXELS):
        raise ImageError(TOO_MANY_PIXELS)
    if min(width, height) < MIN_SIDE:
        raise ImageError(f"The image is too small ({width}x{height}); at least {MIN_SIDE}x{MIN_SIDE} pixels are needed.")
    if max(width, height) > MAX_ASPECT * min(width, height):
        raise ImageError(f"The image is too long and narrow ({width}x{height}); crop it around the lesion.")
    try:
        image.seek(0)
        if reduced_decode:
            image.draft("RGB", (WORKING_SIDE, WORKING_SIDE))
        image.load()
        ImageOps.exif_transpose(image, in_place=True)
        image = _to_rgb(_shrink(image))
    except Exception:  # truncated or corrupt data raises OSError, SyntaxError, ValueError...
        raise ImageError("The image file is damaged or truncated and cannot be decoded.") from None
    return np.asarray(image, dtype="uint8").copy()


def _array_to_rgb(array: np.ndarray) -> np.ndarray:
    array = np.asarray(array)
    if array.ndim == 2:
        array = np.stack([array] * 3, axis=-1)
    if array.ndim != 3 or array.shape[2] not in (1, 3, 4):
        raise ImageError(f"Expected an image array of shape (height, width, 3), got {array.shape}.")
    if array.shape[2] == 1:
        array = np.repeat(array, 3, axis=2)
    if array.dtype != np.uint8:
        if np.issubdtype(array.dtype, np.floating) and array.max(initial=0) <= 1.0:
            array = array * 255.0
        array = np.clip(array, 0, 255).astype("uint8")
    if array.shape[2] == 4:
        array = np.asarray(_to_rgb(Image.fromarray(array, "RGBA")))
    if min(array.shape[:2]) < MIN_SIDE:
        raise ImageError(f"The image is too small ({array.shape[1]}x{array.shape[0]}); at least {MIN_SIDE}x{MIN_SIDE} pixels are needed.")
    return array


def fit_to_input(image: np.ndarray, size) -> np.ndarray:
    """Match the model's orientation and aspect ratio, then resize: float32 (height, width, 3), 0-255.

    Lesions have no up direction, so a portrait image meets a landscape model by a 90° turn rather
    than a squash; the remaining aspect difference is centre-cropped.
    """
    geometry = fit_geometry(image.shape, size)
    height, width = geometry.size
    if geometry.turned:
        image = np.rot90(image)
    top, left, crop_height, crop_width = geometry.crop
    image = image[top:top + crop_height, left:left + crop_width]
    if image.shape[:2] != (height, width):  # Pillow's bilinear filter is antialiased when shrinking
        pil = Image.fromarray(np.clip(image, 0, 255).astype("uint8"))
        image = np.asarray(pil.resize((width, height), Image.Resampling.BILINEAR))
    return image.astype("float32")


def fit_batch(images, size) -> np.ndarray:
    """One image or a batch -> float32 batch (n, height, width, 3) at `size`.

    A float32 batch already at `size` comes back as the same object (classifiers recognise a batch
    they have just answered for by identity)."""
    images = np.asarray(images, dtype="float32")
    if images.ndim == 3:
        images = images[None]
    if images.shape[1:3] != tuple(int(v) for v in size):
        images = np.stack([fit_to_input(image, size) for image in images])
    return images


def load_fitted(source, size) -> np.ndarray:
    """Any image source -> float32 (height, width, 3) at a model's input size: what every model is given."""
    return fit_to_input(load_image(source), size)


# ----------------------------------------------------------------------------- geometry, back to the upload

@dataclass(frozen=True)
class FitGeometry:
    """What `fit_to_input` does to an image of `image_shape` (height, width) for a model of `size`:
    a quarter turn (np.rot90, counter-clockwise) when `turned`, then the crop box `crop` = (top, left,
    height, width) in the turned image, then a resize of that box to `size`.

    `to_image` maps a map at the model's size (region labels, a heat map) back onto the original
    image; pixels outside the crop box, which the model never saw, get `outside`.
    """

    image_shape: tuple[int, int]
    size: tuple[int, int]
    turned: bool
    crop: tuple[int, int, int, int]

    @property
    def scale(self) -> float:
        """Original pixels per model pixel (the same both ways, up to rounding of the crop)."""
        return self.crop[2] / self.size[0]

    def seen(self) -> np.ndarray:
        """bool (height, width) of the original image: True where the model saw the pixel."""
        return self.to_image(np.ones(self.size, dtype=bool), outside=False)

    def to_image(self, values, outside=-1, resample: str = "nearest") -> np.ndarray:
        """A (height, width) map at the model's size -> the same map over the original image.

        "nearest" (labels) takes each original pixel's model pixel as Pillow's resize maps pixel
        centres; "bilinear" (float maps) resizes the map with Pillow. Outside the crop box: `outside`.
        """
        values = np.asarray(values)
        if values.shape[:2] != tuple(self.size):
            raise ValueError(f"Expected a map of the model's size {tuple(self.size)}, got {values.shape[:2]}.")
        top, left, height, width = self.crop
        if resample == "nearest":
            rows = np.minimum(((np.arange(height) + 0.5) * self.size[0] / height).astype(int), self.size[0] - 1)
            cols = np.minimum(((np.arange(width) + 0.5) * self.size[1] / width).astype(int), self.size[1] - 1)
            inside = values[rows[:, None], cols[None, :]]
        elif resample == "bilinear":
            resized = Image.fromarray(values.astype("float32")).resize((width, height), Image.Resampling.BILINEAR)
            inside = np.asarray(resized).astype(values.dtype if values.dtype.kind == "f" else "float32")
        else:
            raise ValueError(f"resample must be 'nearest' or 'bilinear', not {resample!r}.")
        turned_shape = self.image_shape[::-1] if self.turned else self.image_shape
        dtype = np.result_type(inside.dtype, np.asarray(outside).dtype)
        result = np.full((*turned_shape, *values.shape[2:]), outside, dtype=dtype)
        result[top:top + height, left:left + width] = inside
        return np.rot90(result, k=-1).copy() if self.turned else result


def fit_geometry(image_shape, size) -> FitGeometry:
    """The turn, crop box and resize `fit_to_input` applies to an image of `image_shape` for `size`."""
    image_height, image_width = (int(v) for v in tuple(image_shape)[:2])
    height, width = (int(v) for v in size)
    portrait_image, portrait_model = image_height > image_width, height > width
    turned = height != width and image_height != image_width and portrait_image != portrait_model
    h, w = (image_width, image_height) if turned else (image_height, image_width)
    target = width / height
    top, left, crop_height, crop_width = 0, 0, h, w
    if w / h > target * 1.01:
        crop_width = int(round(h * target))
        left = (w - crop_width) // 2
    elif w / h < target / 1.01:
        crop_height = int(round(w / target))
        top = (h - crop_height) // 2
    return FitGeometry((image_height, image_width), (height, width), turned, (top, left, crop_height, crop_width))
