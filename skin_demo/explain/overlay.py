"""Pictures of explanations, the one place that draws them: LIME regions and Grad-CAM heat maps.

`draw` puts a LIME explanation on the picture the person uploaded, at its own resolution: the
model-sized region map goes back through the inverse of `images.fit_to_input` (`images.fit_geometry`),
the regions with the largest |weight| are tinted green (for the class) or red (against it), outlined
and numbered with the ids `region_rows` lists (id = column + 1, `regions.region_id`), margins the
model never saw (cropped away to fit its aspect ratio) are greyed and hatched, and a legend says so
(drawn in the corner that hides the fewest numbered regions, and returned as text).

Any object with the fields of `lime.Explanation` (image, segments, weights, weight_errors, label)
can be drawn; this module imports nothing from lime.py, which re-exports `overlay` for older callers.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy.ndimage import binary_dilation, distance_transform_edt
from skimage.segmentation import find_boundaries

from ..images import FitGeometry, fit_geometry
from .regions import TOP_K, region_id, top_superpixels

GREEN = np.array([0, 200, 0], dtype="float32")
RED = np.array([220, 0, 0], dtype="float32")
BOUNDARY = np.array([255, 255, 0], dtype="float32")
UNSEEN = np.array([128, 128, 128], dtype="float32")  # margins the model never saw: greyed ...
HATCH = np.array([90, 90, 90], dtype="float32")  # ... and hatched
UNSEEN_BLEND = 0.6
LEGEND_MAX_AREA = 0.12  # a legend hiding more of a small picture is only returned as text


@dataclass
class Picture:
    """An explanation drawn on a picture, with what a reader needs beside it."""

    image: np.ndarray  # uint8 (H, W, 3): the picture with the explanation drawn on it
    legend: str  # what colours, numbers and hatching mean, one item per line
    rows: list[tuple[int, float, float]]  # (region id, weight, standard error) of the numbered regions, as numbered
    markers: dict[int, tuple[int, int]]  # region id -> (x, y) where its number is drawn (empty without numbers)
    seen: np.ndarray  # bool (H, W): pixels the model saw
    legend_box: tuple[int, int, int, int] | None  # (left, top, right, bottom) of the drawn legend, None if not drawn


def region_rows(explanation, label: int | None = None, limit: int | None = None) -> list[tuple[int, float, float]]:
    """[(region id, weight, standard error), ...] for the class, largest |weight| first (the order `draw`
    numbers and tints them in); ids are the numbers drawn on the picture. `limit` keeps the first rows."""
    label = explanation.label if label is None else int(label)
    weights = np.asarray(explanation.weights[label])
    errors = getattr(explanation, "weight_errors", None)
    errors = np.full(len(weights), np.nan) if errors is None else np.asarray(errors[label])
    order = top_superpixels(weights, len(weights) if limit is None else limit)
    return [(region_id(j), float(weights[j]), float(errors[j])) for j in order]


def legend_text(class_name: str, unseen: bool = False) -> str:
    """What the picture shows, one item a line (the colours first, in the order of the swatches)."""
    lines = [f"green: supports {class_name}", f"red: opposes {class_name}", "numbers: region ids, as in the table"]
    if unseen:
        lines.append("hatched grey: not seen by the model")
    return "\n".join(lines)


# ----------------------------------------------------------------------------- painting

def _mark_unseen(canvas: np.ndarray, unseen: np.ndarray) -> None:
    """Grey out and hatch (diagonal lines) the pixels in `unseen`, in place."""
    if not unseen.any():
        return
    canvas[unseen] = (1 - UNSEEN_BLEND) * canvas[unseen] + UNSEEN_BLEND * UNSEEN
    spacing = max(6, round(min(unseen.shape) / 40))
    y, x = np.mgrid[0:unseen.shape[0], 0:unseen.shape[1]]
    lines = unseen & ((x + y) % spacing < max(1, spacing // 5))
    canvas[lines] = HATCH


def _paint_regions(canvas: np.ndarray, labels: np.ndarray, weights, chosen, alpha: float, thickness: int = 1) -> None:
    """Tint the `chosen` regions of `labels` green (weight > 0) or red, and outline them, in place."""
    weights = np.asarray(weights)
    tint = np.zeros((len(weights) + 1, 3), dtype="float32")  # index 0: outside the model's view (label -1)
    selected = np.zeros(len(weights) + 1, dtype=bool)
    tint[np.asarray(chosen) + 1] = np.where((weights[chosen] > 0)[:, None], GREEN, RED)
    selected[np.asarray(chosen) + 1] = True
    shifted = labels + 1
    pixels = selected[shifted]
    canvas[pixels] = (1 - alpha) * canvas[pixels] + alpha * tint[shifted][pixels]
    borders = find_boundaries(np.where(pixels, shifted, 0), mode="inner")
    if thickness > 1:
        borders = binary_dilation(borders, iterations=thickness - 1) & pixels
    canvas[borders] = BOUNDARY


def _to_uint8(canvas: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(canvas), 0, 255).astype("uint8")


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)
    except (TypeError, OSError, ImportError):  # Pillow without FreeType: the small bitmap font
        return ImageFont.load_default()


def _text(pen: ImageDraw.ImageDraw, xy, text: str, font, anchor: str, **style) -> tuple[int, int, int, int]:
    """Text placed by its middle ("mm") or left-middle ("lm"), with bitmap fonts too (they take no anchor);
    returns the box it covers."""
    stroke = style.get("stroke_width", 0)
    if isinstance(font, ImageFont.FreeTypeFont):
        pen.text(xy, text, font=font, anchor=anchor, **style)
        return pen.textbbox(xy, text, font=font, anchor=anchor, stroke_width=stroke)
    left, top, right, bottom = pen.textbbox((0, 0), text, font=font)
    x = xy[0] - (right - left) // 2 if anchor == "mm" else xy[0]
    pen.text((x, xy[1] - (bottom - top) // 2), text, font=font, **style)
    return pen.textbbox((x, xy[1] - (bottom - top) // 2), text, font=font, stroke_width=stroke)


def _legend_box(draw: ImageDraw.ImageDraw, lines: list[str], font, swatch: int) -> tuple[int, int]:
    widths = [draw.textbbox((0, 0), line, font=font)[2] for line in lines]
    line_height = max(draw.textbbox((0, 0), "Ag", font=font)[3], swatch) + 2
    return max(widths) + swatch + 10, line_height * len(lines) + 6


def _place_legend(size: tuple[int, int], box: tuple[int, int], busy: np.ndarray) -> tuple[int, int, int, int] | None:
    """The corner where a (w, h) box covers the fewest `busy` pixels (ties: bottom-left first), or None if it
    would hide too much: more than LEGEND_MAX_AREA of the picture, 90 % of its width or 30 % of its height."""
    height, width = size
    w, h = box
    if w * h > LEGEND_MAX_AREA * width * height or w > width * 0.9 or h > height * 0.3:
        return None
    corners = [(0, height - h), (width - w, height - h), (0, 0), (width - w, 0)]
    cost = [busy[top:top + h, left:left + w].sum() for left, top in corners]
    left, top = corners[int(np.argmin(cost))]
    return left, top, left + w, top + h


def _number_position(mask: np.ndarray, avoid: np.ndarray | None) -> tuple[int, int]:
    """(x, y) deepest inside `mask` (farthest from its border; of equally deep points, the one nearest
    the region's centre), outside `avoid` when possible."""
    ys, xs = np.nonzero(mask)
    top, left = ys.min(), xs.min()
    box = np.pad(mask[top:ys.max() + 1, left:xs.max() + 1], 1)
    if avoid is not None:
        free = box & ~np.pad(avoid[top:ys.max() + 1, left:xs.max() + 1], 1)
        box = free if free.any() else box
    grid_y, grid_x = np.indices(box.shape)
    off_centre = np.hypot(grid_y - (ys.mean() - top + 1), grid_x - (xs.mean() - left + 1))
    score = distance_transform_edt(box) - 1e-3 * off_centre  # depth first; 1e-3 px per px only breaks ties
    y, x = np.unravel_index(int(np.argmax(np.where(box, score, -np.inf))), box.shape)
    return int(left + x - 1), int(top + y - 1)


# ----------------------------------------------------------------------------- LIME

def draw(explanation, picture=None, num_features: int = TOP_K, label: int | None = None,
         class_name: str | None = None, alpha: float = 0.45, numbers: bool = True, legend: bool = True) -> Picture:
    """The explanation drawn on `picture`: the uploaded image (any size, RGB uint8) the model's input was
    made from by `images.fit_to_input`, or None for the model's input itself.

    The `num_features` regions with the largest |weight| for the class (`label`, default the
    explained one) are tinted green (for) / red (against), outlined and, with `numbers`, numbered
    with their region ids; pixels the model did not see are greyed and hatched. The legend names
    `class_name` (default "class <label>"); with `legend` it is also drawn in a free corner when it fits.
    """
    label = explanation.label if label is None else int(label)
    segments = np.asarray(explanation.segments)
    if picture is None:
        picture = explanation.image
    picture = np.asarray(picture)
    if picture.ndim == 2:
        picture = np.stack([picture] * 3, axis=-1)
    geometry: FitGeometry = fit_geometry(picture.shape, segments.shape)
    labels = geometry.to_image(segments, outside=-1)
    seen = labels >= 0
    canvas = picture[..., :3].astype("float32")
    _mark_unseen(canvas, ~seen)
    rows = region_rows(explanation, label, max(0, int(num_features)))
    chosen = np.array([r[0] - 1 for r in rows], dtype=int)
    thickness = max(1, int(round(geometry.scale / 2)))
    _paint_regions(canvas, labels, explanation.weights[label], chosen, alpha, thickness)
    image = Image.fromarray(_to_uint8(canvas))
    pen = ImageDraw.Draw(image)
    height, width = seen.shape
    unseen = bool((~seen).any())
    text = legend_text(class_name or f"class {label}", unseen)
    box = None
    if legend:
        font = _font(max(9, round(min(height, width) / 28)))
        swatch = max(6, round(font.size * 0.8)) if hasattr(font, "size") else 8
        lines = text.splitlines()
        box = _place_legend((height, width), _legend_box(pen, lines, font, swatch), np.isin(labels, chosen))
        if box is not None:
            _draw_legend(pen, box, lines, font, swatch)
    markers = {}
    if numbers and len(chosen):
        font = _font(max(10, round(min(height, width) / 14)))
        avoid = np.zeros(seen.shape, dtype=bool)  # the legend and the numbers already drawn
        if box is not None:
            avoid[box[1]:box[3], box[0]:box[2]] = True
        stroke = max(1, round(getattr(font, "size", 10) / 10))
        for j in chosen:
            mask = labels == j
            if not mask.any():
                continue
            x, y = _number_position(mask, avoid)
            left, top, right, bottom = _text(pen, (x, y), str(region_id(j)), font, "mm", fill=(255, 255, 255),
                                             stroke_width=stroke, stroke_fill=(0, 0, 0))
            # the next number's centre this close to the box would draw over this one
            half_w, half_h = (right - left) // 2 + 1, (bottom - top) // 2 + 1
            avoid[max(0, top - half_h):max(0, bottom + half_h), max(0, left - half_w):max(0, right + half_w)] = True
            markers[region_id(j)] = (x, y)
    return Picture(np.array(image), text, rows, markers, seen, box)


def _draw_legend(pen: ImageDraw.ImageDraw, box, lines: list[str], font, swatch: int) -> None:
    left, top, right, bottom = box
    pen.rectangle(box, fill=(255, 255, 255), outline=(0, 0, 0))
    line_height = (bottom - top - 6) // len(lines)
    swatches = [tuple(int(v) for v in GREEN), tuple(int(v) for v in RED), None, tuple(int(v) for v in HATCH)]
    for i, line in enumerate(lines):
        y = top + 3 + i * line_height
        colour = swatches[i] if i < len(swatches) else None
        if colour is not None:
            middle = y + line_height // 2
            pen.rectangle((left + 3, middle - swatch // 2, left + 3 + swatch, middle + swatch // 2), fill=colour)
        _text(pen, (left + swatch + 7, y + line_height // 2), line, font, "lm", fill=(0, 0, 0))


def overlay(explanation, num_features: int = TOP_K, label: int | None = None, alpha: float = 0.45) -> np.ndarray:
    """uint8 picture of the model's input: the `num_features` regions with the largest |weight| tinted
    green (for the class) or red (against it), their borders drawn, every other pixel untouched (no
    numbers, no legend; `draw` makes the readable picture)."""
    weights = explanation.weights[explanation.label if label is None else label]
    canvas = np.asarray(explanation.image, dtype="float32").copy()
    _paint_regions(canvas, np.asarray(explanation.segments), weights, top_superpixels(weights, num_features), alpha)
    return _to_uint8(canvas)


# ----------------------------------------------------------------------------- Grad-CAM

def gradcam_overlay(image, heatmap, alpha: float = 0.4, picture=None) -> np.ndarray:
    """uint8 picture: the heat map (at the model's input size, in [0, 1]) in the 'jet' colours blended
    over the model's input `image`, or, given the uploaded `picture`, over that picture at its own
    size (the heat mapped back through `images.fit_geometry`, unseen margins greyed and hatched)."""
    from matplotlib import colormaps  # only Grad-CAM needs matplotlib

    heatmap = np.asarray(heatmap, dtype="float32")
    if picture is None:
        base, heat, seen = np.asarray(image, dtype="float32"), heatmap, None
    else:
        base = np.asarray(picture)[..., :3].astype("float32")
        geometry = fit_geometry(base.shape, heatmap.shape)
        heat = geometry.to_image(heatmap, outside=np.nan, resample="bilinear")
        seen = ~np.isnan(heat)
        heat = np.nan_to_num(heat)
    colours = colormaps["jet"](np.clip(heat, 0, 1))[..., :3] * 255
    canvas = (1 - alpha) * base + alpha * colours
    if seen is not None:
        canvas[~seen] = base[~seen]
        _mark_unseen(canvas, ~seen)
    return _to_uint8(canvas)
