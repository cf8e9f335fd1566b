"""Training augmentation: one stateless, batch-level TF function and the recipe it follows.

Why each element (images are float32 RGB 0-255 at the model's input size; preprocessing is in the model):
- crop, rotation, flips: a lesion has no up direction and no fixed framing. Random resized crop with aspect
  jitter, a 0-360 degree turn and flips are one projective transform per image with REFLECT fill, so no
  black corner appears (a black corner would itself look like a dermatoscope border).
- colour (hue, saturation, value, contrast, channel gain) and Shades of Gray: cameras and lighting differ
  between clinics; colour must not identify the source.
- resolution bottleneck (downscale -> upscale) and vignette (dark round border): the second training
  source is 84x84 upsampled and often shows a contact dermatoscope's black circle. If only those images
  were blurry or bordered, "blurry / bordered -> that clinic -> its class mix" would be a shortcut, so
  the same bottleneck and border are applied to every image at random. Both come first, before crop and
  colour, so a synthetic border or blur goes through the same pipeline as a real one.
- cutout: one rectangle filled with the image's mean colour, so no single patch (a ruler, a hair, a marker
  dot) decides.

`augment` is deterministic for a stateless seed (shape (2,) integer tensor): every random element draws
from its own fixed sub-stream, so switching one element off leaves the others' draws unchanged.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

import numpy as np
import tensorflow as tf

# Colour jitter ranges of `hsv=True` (fixed, so a recipe stored as a dict means one thing).
HUE_SHIFT = 0.04  # +- fraction of the colour circle (rotation of the YIQ chroma plane)
SATURATION = (0.7, 1.3)  # chroma scale
VALUE = (0.7, 1.3)  # brightness scale (all channels)
CONTRAST = (0.8, 1.2)  # around the image mean
CHANNEL_GAIN = (0.93, 1.07)  # per channel: a mild colour cast
# Vignette shape: radius as a fraction of the half-diagonal (0.55: the circle cuts the top and bottom of
# a 4:3 frame, as a 84x84 dermatoscope image cropped to 63x84; 0.9: mostly the corners darken).
VIGNETTE_RADIUS = (0.55, 0.9)
CUTOUT_AREA = (0.05, 0.25)

# Fixed sub-stream per random element (stateless_fold_in data): do not renumber.
_VIGNETTE, _BLUR, _GRAY, _GEOMETRY, _COLOUR, _CUTOUT, _MIX = 1, 2, 3, 4, 5, 6, 7

_RGB_TO_YIQ = ((0.299, 0.587, 0.114), (0.595716, -0.274453, -0.321263), (0.211456, -0.522591, 0.311135))
_RANGES = ("crop_scale", "crop_aspect", "blur_factor")
_PROBABILITIES = ("colour_constancy", "cutout", "blur", "vignette")


@dataclass(frozen=True)
class Augmentation:
    """A training augmentation recipe; plain fields, stored as a dict in the model JSON and on the card.

    crop_scale: area of the random crop as a fraction of the image (above 1 zooms out, REFLECT fills).
    crop_aspect: aspect jitter of the crop (width/height relative to the frame); covers a 4:3 stretch.
    rotate: uniform 0-360 degrees. flip: random horizontal and vertical flips.
    hsv: hue +-0.04 turn, saturation and value x0.7-1.3, contrast x0.8-1.2, channel gain x0.93-1.07.
    colour_constancy: probability of Shades of Gray (p=6) on an image.
    cutout: probability of one rectangle (5-25 % of the area) filled with the image's mean colour.
    blur: probability of the resolution bottleneck (downscale by `blur_factor`, one factor per batch, up again).
    vignette: probability of a dark circular border like a contact dermatoscope's.
    The defaults are close to the former `data.augment_batch` (zoom, full rotation, flips, colour jitter,
    25 % blur), with aspect jitter and a stronger bottleneck added; `NONE` switches everything off.
    """

    crop_scale: tuple = (0.7, 1.2)
    crop_aspect: tuple = (3 / 4, 4 / 3)
    rotate: bool = True
    flip: bool = True
    hsv: bool = True
    colour_constancy: float = 0.0
    cutout: float = 0.0
    blur: float = 0.25
    blur_factor: tuple = (0.3, 0.8)
    vignette: float = 0.0

    def __post_init__(self):
        for name in _RANGES:  # lists (from JSON) become tuples of floats, so equality and hashing hold
            value = tuple(float(v) for v in getattr(self, name))
            if len(value) != 2 or not 0 < value[0] <= value[1]:
                raise ValueError(f"{name} must be (low, high) with 0 < low <= high, not {getattr(self, name)!r}")
            object.__setattr__(self, name, value)
        for name in _PROBABILITIES:
            value = float(getattr(self, name))
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} is a probability in [0, 1], not {value!r}")
            object.__setattr__(self, name, value)
        for name in ("rotate", "flip", "hsv"):
            object.__setattr__(self, name, bool(getattr(self, name)))
        if self.blur_factor[1] > 1.0:
            raise ValueError(f"blur_factor must not exceed 1, not {self.blur_factor!r}")

    def to_dict(self) -> dict:
        """JSON-ready: tuples become lists."""
        return {f.name: list(v) if isinstance(v := getattr(self, f.name), tuple) else v
                for f in dataclasses.fields(self)}

    @classmethod
    def from_dict(cls, values: dict) -> "Augmentation":
        """Inverse of `to_dict`; missing keys take the defaults, unknown keys raise ValueError."""
        unknown = set(values) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"unknown augmentation field(s): {', '.join(sorted(unknown))}")
        return cls(**values)

    @property
    def geometric(self) -> bool:
        return self.rotate or self.flip or self.crop_scale != (1.0, 1.0) or self.crop_aspect != (1.0, 1.0)

    def describe(self) -> str:
        """One line for the model card, e.g. 'crop 70-120% area (aspect 0.75-1.33), rotate 0-360°, ...'."""
        parts = []
        if self.crop_scale != (1.0, 1.0) or self.crop_aspect != (1.0, 1.0):
            parts.append(f"crop {self.crop_scale[0]:.0%}-{self.crop_scale[1]:.0%} area "
                         f"(aspect {self.crop_aspect[0]:.2f}-{self.crop_aspect[1]:.2f})")
        if self.rotate:
            parts.append("rotate 0-360°")
        if self.flip:
            parts.append("flips")
        if self.hsv:
            parts.append(f"HSV jitter (hue ±{HUE_SHIFT:g}, sat/value ×{SATURATION[0]:g}-{SATURATION[1]:g}, "
                         f"contrast ×{CONTRAST[0]:g}-{CONTRAST[1]:g})")
        if self.colour_constancy:
            parts.append(f"Shades of Gray p={self.colour_constancy:g}")
        if self.cutout:
            parts.append(f"cutout p={self.cutout:g}")
        if self.blur:
            parts.append(f"resolution bottleneck p={self.blur:g} "
                         f"(×{self.blur_factor[0]:g}-{self.blur_factor[1]:g})")
        if self.vignette:
            parts.append(f"vignette p={self.vignette:g}")
        return ", ".join(parts) if parts else "none"


NONE = Augmentation(crop_scale=(1.0, 1.0), crop_aspect=(1.0, 1.0), rotate=False, flip=False, hsv=False,
                    colour_constancy=0.0, cutout=0.0, blur=0.0, vignette=0.0)


# ----------------------------------------------------------------------------- Shades of Gray

def shades_of_gray(images, p: float = 6):
    """Shades of Gray colour constancy on a batch (n, H, W, 3) or one image (H, W, 3), RGB 0-255.

    Per image, the illuminant is e_c = (mean x_c^p)^(1/p); each channel is scaled by mean(e) / e_c so the
    estimate becomes grey, then clipped to 0-255. float32 out.
    """
    images = tf.cast(images, tf.float32)
    norm = _power(images / 255.0, p)
    illuminant = tf.pow(tf.reduce_mean(norm, axis=[-3, -2], keepdims=True), 1.0 / p)
    grey = tf.reduce_mean(illuminant, axis=-1, keepdims=True)
    return tf.clip_by_value(images * ((grey + 1e-6) / (illuminant + 1e-6)), 0.0, 255.0)


def _power(x, p):
    """x ** p; by repeated squaring for a whole p (several times faster than tf.pow on CPU)."""
    if float(p) != int(p) or not 1 <= p <= 64:
        return tf.pow(x, float(p))
    result, base, n = None, x, int(p)
    while n:
        if n & 1:
            result = base if result is None else result * base
        n >>= 1
        if n:
            base = base * base
    return result


def shades_of_gray_np(image, p: float = 6) -> np.ndarray:
    """numpy twin of `shades_of_gray` for one (H, W, 3) RGB 0-255 image (serving, tests); float32 out."""
    image = np.asarray(image, dtype=np.float64)
    illuminant = np.mean((image / 255.0) ** p, axis=(0, 1)) ** (1.0 / p)
    scale = (illuminant.mean() + 1e-6) / (illuminant + 1e-6)
    return np.clip(image * scale, 0.0, 255.0).astype(np.float32)


# ----------------------------------------------------------------------------- the augmentation

def augment(images, seed, options: Augmentation = Augmentation()):
    """Augment a batch (n, H, W, 3) of RGB 0-255 images; deterministic for `seed`, same shape and dtype.

    `seed`: stateless seed, an integer tensor of shape (2,) (a scalar s is taken as (s, 0)). Works eagerly,
    in `tf.function` and in `tf.data.Dataset.map`; `options` is read at trace time (a Python object).
    Order: vignette, bottleneck (as a real bordered low-resolution image), Shades of Gray, crop + rotation +
    flips (one transform, REFLECT fill), colour jitter, cutout, clip to [0, 255].
    """
    images = tf.convert_to_tensor(images)
    dtype, static_shape = images.dtype, images.shape
    x = tf.cast(images, tf.float32)
    seed = tf.cast(seed, tf.int64)
    if seed.shape.rank == 0:
        seed = tf.stack([seed, tf.zeros_like(seed)])
    shape = tf.shape(x)
    batch, height, width = shape[0], shape[1], shape[2]
    h, w = tf.cast(height, tf.float32), tf.cast(width, tf.float32)

    def uniform(stream, columns=None):
        """(batch,) or (batch, columns) uniforms in [0, 1) from the element's own sub-stream."""
        sub = tf.random.experimental.stateless_fold_in(seed, stream)
        size = tf.stack([batch]) if columns is None else tf.stack([batch, columns])
        return tf.random.stateless_uniform(size, sub)

    def chosen(stream, probability):
        return (uniform(stream) < probability)[:, None, None, None]

    if options.vignette > 0:
        x = _vignette(x, chosen(_VIGNETTE, options.vignette), uniform(_VIGNETTE + 100, 6), h, w)
    if options.blur > 0:
        factor_seed = tf.random.experimental.stateless_fold_in(seed, _BLUR + 100)
        factor = tf.random.stateless_uniform([], factor_seed, *options.blur_factor)
        x = _bottleneck(x, uniform(_BLUR) < options.blur, factor, height, width)
    if options.colour_constancy > 0:
        x = tf.where(chosen(_GRAY, options.colour_constancy), shades_of_gray(x), x)
    if options.geometric:
        x = _geometry(x, uniform(_GEOMETRY, 7), options, h, w, height, width)
    if options.hsv:
        x = _colour(x, uniform(_COLOUR, 7))
    if options.cutout > 0:
        x = _cutout(x, chosen(_CUTOUT, options.cutout), uniform(_CUTOUT + 100, 4), h, w, height, width)
    x = tf.clip_by_value(x, 0.0, 255.0)
    if dtype.is_integer:
        x = tf.round(x)
    return tf.ensure_shape(tf.cast(x, dtype), static_shape)


def _lerp(u, low_high):
    low, high = low_high
    return low + u * (high - low)


def _vignette(x, apply, u, h, w):
    """A dark circle border: radius 0.55-0.9 of the half-diagonal, centre jitter +-3 %, x/y aspect 0.95-1.05,
    edge 1-4 % of the half-diagonal wide, dark level 0-20."""
    half_diagonal = tf.sqrt(h * h + w * w) / 2
    radius = _lerp(u[:, 0], VIGNETTE_RADIUS) * half_diagonal
    cx = (w - 1) / 2 + (u[:, 1] - 0.5) * 0.06 * w
    cy = (h - 1) / 2 + (u[:, 2] - 0.5) * 0.06 * h
    aspect = _lerp(u[:, 3], (0.95, 1.05))
    edge = _lerp(u[:, 4], (0.01, 0.04)) * half_diagonal
    dark = _lerp(u[:, 5], (0.0, 20.0))[:, None, None, None]
    xs = tf.range(w)[None, None, :] - cx[:, None, None]
    ys = tf.range(h)[None, :, None] - cy[:, None, None]
    distance = tf.sqrt(tf.square(xs / aspect[:, None, None]) + tf.square(ys))
    inside = tf.clip_by_value((radius[:, None, None] - distance) / edge[:, None, None] + 0.5, 0.0, 1.0)[..., None]
    return tf.where(apply, x * inside + dark * (1.0 - inside), x)


def _bottleneck(x, apply, factor, height, width):
    """Downscale (antialiased) by `factor` and back up (bilinear), on the chosen images only."""
    index = tf.where(apply)
    size = tf.stack([height, width])
    small_size = tf.maximum(tf.cast(tf.round(tf.cast(size, tf.float32) * factor), tf.int32), 1)
    chosen = tf.gather_nd(x, index)
    blurred = tf.image.resize(tf.image.resize(chosen, small_size, antialias=True), size)
    return tf.tensor_scatter_nd_update(x, index, blurred)


def _geometry(x, u, options, h, w, height, width):
    """Random resized crop + rotation + flips as one output->input projective transform (REFLECT fill)."""
    area = _lerp(u[:, 0], options.crop_scale)
    log_aspect = _lerp(u[:, 1], (math.log(options.crop_aspect[0]), math.log(options.crop_aspect[1])))
    aspect = tf.exp(log_aspect)
    most = max(1.0, math.sqrt(options.crop_scale[1]))  # no reflected band from the crop unless zooming out
    sx = tf.minimum(tf.sqrt(area * aspect), most)  # crop width / image width
    sy = tf.minimum(tf.sqrt(area / aspect), most)
    cx = (w - 1) / 2 + (u[:, 2] - 0.5) * tf.abs(1.0 - sx) * w  # crop centre: crop inside the image
    cy = (h - 1) / 2 + (u[:, 3] - 0.5) * tf.abs(1.0 - sy) * h
    angle = u[:, 4] * 2 * math.pi if options.rotate else tf.zeros_like(area)
    if options.flip:
        sx = tf.where(u[:, 5] < 0.5, -sx, sx)
        sy = tf.where(u[:, 6] < 0.5, -sy, sy)
    cos, sin = tf.cos(angle), tf.sin(angle)
    m00, m01, m10, m11 = cos * sx, -sin * sy, sin * sx, cos * sy  # R(angle) @ diag(sx, sy)
    ox, oy = (w - 1) / 2, (h - 1) / 2
    zeros = tf.zeros_like(area)
    transform = tf.stack([m00, m01, cx - m00 * ox - m01 * oy,
                          m10, m11, cy - m10 * ox - m11 * oy, zeros, zeros], axis=1)
    return tf.raw_ops.ImageProjectiveTransformV3(
        images=x, transforms=transform, output_shape=tf.stack([height, width]),
        fill_value=0.0, interpolation="BILINEAR", fill_mode="REFLECT")


def _colour(x, u):
    """Hue rotation and saturation in YIQ, value, contrast and channel gain: one 3x3 matrix + offset per image."""
    to_yiq = tf.constant(_RGB_TO_YIQ, tf.float32)
    from_yiq = tf.linalg.inv(to_yiq)
    theta = _lerp(u[:, 0], (-HUE_SHIFT, HUE_SHIFT)) * 2 * math.pi
    saturation = _lerp(u[:, 1], SATURATION)
    value = _lerp(u[:, 2], VALUE)
    contrast = _lerp(u[:, 3], CONTRAST)
    gain = _lerp(u[:, 4:7], CHANNEL_GAIN)  # (n, 3)
    cos, sin = tf.cos(theta) * saturation, tf.sin(theta) * saturation
    ones, zeros = tf.ones_like(theta), tf.zeros_like(theta)
    chroma = tf.reshape(tf.stack([ones, zeros, zeros, zeros, cos, -sin, zeros, sin, cos], axis=1), [-1, 3, 3])
    matrix = (gain * value[:, None])[:, :, None] * tf.matmul(from_yiq, tf.matmul(chroma, to_yiq))  # (n, 3, 3)
    # contrast about the image's grey mean, folded in: y = c M x + (1 - c) mean(M mean_x)
    mean_in = tf.reduce_mean(x, axis=[1, 2])  # (n, 3)
    mean_out = tf.reduce_mean(tf.linalg.matvec(matrix, mean_in), axis=1)  # (n,)
    matrix = contrast[:, None, None] * matrix
    offset = ((1.0 - contrast) * mean_out)[:, None, None, None]
    shape = tf.shape(x)
    flat = tf.reshape(x, [shape[0], -1, 3])
    return tf.reshape(tf.matmul(flat, matrix, transpose_b=True), shape) + offset


def _cutout(x, apply, u, h, w, height, width):
    """One rectangle (5-25 % of the area, aspect 1/2-2, centre anywhere, clipped by the edges) per chosen image,
    filled with the image's mean colour."""
    area = _lerp(u[:, 0], CUTOUT_AREA)
    aspect = tf.exp(_lerp(u[:, 1], (math.log(0.5), math.log(2.0))))
    half_w = tf.minimum(tf.sqrt(area * aspect), 1.0) * w / 2
    half_h = tf.minimum(tf.sqrt(area / aspect), 1.0) * h / 2
    cx, cy = u[:, 2] * w, u[:, 3] * h
    xs = tf.range(w)[None, :] + 0.5
    ys = tf.range(h)[None, :] + 0.5
    in_x = tf.abs(xs - cx[:, None]) < half_w[:, None]  # (n, W)
    in_y = tf.abs(ys - cy[:, None]) < half_h[:, None]  # (n, H)
    box = tf.logical_and(in_y[:, :, None], in_x[:, None, :])[..., None]
    mean = tf.reduce_mean(x, axis=[1, 2], keepdims=True)
    return tf.where(tf.logical_and(apply, box), mean, x)


# ----------------------------------------------------------------------------- mixing images and labels

def mix_batch(images, labels, seed, mixup: float = 0.0, cutmix: float = 0.0, probability: float = 0.5):
    """Mixup or CutMix of an augmented batch with the same batch reversed; labels mix in the same proportion.

    Why: a soft boundary between classes that share structures (nevus / melanoma / keratosis) instead of
    one-hot certainty, and (CutMix) evidence spread over the lesion rather than one patch. `mixup` and
    `cutmix` are the alphas of Beta(alpha, alpha) for the mixing weight (0 = that kind off); with both on,
    a mixed batch is one kind or the other at even odds. A batch is mixed with `probability`, else passes
    unchanged. One weight per batch (as timm's default). CutMix's label weight is the box's true share of
    the image after clipping at the edges. Deterministic for `seed` (sub-stream 7, apart from `augment`'s).
    """
    x = tf.convert_to_tensor(images, tf.float32)
    y = tf.cast(labels, tf.float32)
    if not (mixup > 0 or cutmix > 0) or probability <= 0:
        return x, y
    seed = tf.random.experimental.stateless_fold_in(tf.cast(seed, tf.int64), _MIX)
    u = tf.random.stateless_uniform([4], seed)  # mix at all, which kind, box centre x, y
    use_cutmix = tf.constant(cutmix > 0) if not (mixup > 0 and cutmix > 0) else u[1] < 0.5
    alpha = tf.where(use_cutmix, float(cutmix or 1.0), float(mixup or 1.0))
    gammas = tf.random.stateless_gamma([2], tf.random.experimental.stateless_fold_in(seed, 1), alpha=alpha)
    weight = gammas[0] / (gammas[0] + gammas[1])  # Beta(alpha, alpha): the share of the image itself
    other_x, other_y = tf.reverse(x, [0]), tf.reverse(y, [0])
    shape = tf.shape(x)
    h, w = tf.cast(shape[1], tf.float32), tf.cast(shape[2], tf.float32)
    side = tf.sqrt(1.0 - weight)  # a box with the other image's share of the area, same aspect as the frame
    cx, cy = u[2] * w, u[3] * h
    x0, x1 = tf.clip_by_value(cx - side * w / 2, 0.0, w), tf.clip_by_value(cx + side * w / 2, 0.0, w)
    y0, y1 = tf.clip_by_value(cy - side * h / 2, 0.0, h), tf.clip_by_value(cy + side * h / 2, 0.0, h)
    xs, ys = tf.range(w) + 0.5, tf.range(h) + 0.5
    box = tf.logical_and((ys[:, None] > y0) & (ys[:, None] < y1), (xs[None, :] > x0) & (xs[None, :] < x1))
    box_share = tf.reduce_mean(tf.cast(box, tf.float32))
    mixed_x = tf.where(use_cutmix, tf.where(box[None, :, :, None], other_x, x),
                       weight * x + (1.0 - weight) * other_x)
    share = tf.where(use_cutmix, 1.0 - box_share, weight)
    mixed_y = share * y + (1.0 - share) * other_y
    mix = u[0] < probability
    return tf.where(mix, mixed_x, x), tf.where(mix, mixed_y, y)
