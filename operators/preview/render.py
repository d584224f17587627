"""Pictures of a vessel segmentation and its uncertainty map, with numpy and Pillow.

Every picture is two panels side by side, the same size and the same view:

* left, the vessels: the source image in grey (window from its own percentiles, so CT
  and MR both show) with the SEG blended in red; without a source image (the service
  deletes a study's instances once it is exported) a depth-shaded projection of the
  SEG itself, nearer vessels brighter, so the 3D tree still reads;
* right, the uncertainty map in a perceptual heat scale from 0 to the study's maximum
  (one scale for every picture of a study, so slices compare), with the SEG's outline
  in cyan: uncertainty should hug the vessel borders, a blob away from them is what a
  reviewer looks for.

Views: the maximum-intensity projection along the slice axis (as an axial MIP) and
single axial slices, in the source images' row/column orientation (as a viewer shows
them), scaled to ``PANEL_PX`` on the long side with the pixel spacing's aspect.
"""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

PANEL_PX = 320  # long side of one panel, pixels
CAPTION_PX = 22
BAR_PX = 12  # the heat scale's strip under the uncertainty panel
GAP_PX = 6
CANVAS = (17, 20, 24)  # page-dark background between panels
EMPTY_FIELD = (28, 31, 36)  # a slice with no source image under the SEG
SEG_RGB = (255, 59, 48)
OUTLINE_RGB = (0, 229, 255)
OVERLAY_ALPHA = 0.6
WINDOW_PERCENTILES = (1.0, 99.5)
NEAREST_SHADE = 1.0
FARTHEST_SHADE = 0.35  # depth shading: the farthest vessel keeps a third of its light

# Heat scale: control points of matplotlib's "inferno" (perceptually uniform, readable
# in grey and by most colour-blind readers), interpolated to 256 entries.
_INFERNO = ((0.0, (0, 0, 4)), (0.25, (87, 16, 110)), (0.5, (188, 55, 84)),
            (0.75, (249, 142, 9)), (1.0, (252, 255, 164)))  # fmt: skip


class PreviewError(ValueError):
    """The arrays cannot be pictured (shapes differ, not 3D, nothing finite)."""


def _lookup_table(stops: tuple[tuple[float, tuple[int, int, int]], ...]) -> np.ndarray:
    positions = np.array([p for p, _ in stops])
    colours = np.array([c for _, c in stops], dtype=np.float64)
    ramp = np.linspace(0.0, 1.0, 256)
    channels = [np.interp(ramp, positions, colours[:, c]) for c in range(3)]
    return np.round(np.stack(channels, axis=1)).astype(np.uint8)


HEAT_LUT = _lookup_table(_INFERNO)


@dataclass(frozen=True)
class ResultVolumes:
    """One series' result on one voxel grid, indexed [slice, row, column].

    ``mask``: the vessel SEG (bool); ``uncertainty``: the map in nats (float);
    ``spacing_mm``: (slice, row, column) spacing; ``background``: the source image on
    the same grid, when the caller has it; ``uncertainty_name``: the map's quantity
    (e.g. MI for mutual information), for the caption.
    """

    mask: np.ndarray
    uncertainty: np.ndarray
    spacing_mm: tuple[float, float, float]
    background: np.ndarray | None = None
    uncertainty_name: str = "MI"

    def __post_init__(self) -> None:
        if self.mask.ndim != 3:
            raise PreviewError(f"the SEG must be a 3D array, not {self.mask.ndim}D")
        shapes = {"SEG": self.mask.shape, "uncertainty map": self.uncertainty.shape}
        if self.background is not None:
            shapes["source image"] = self.background.shape
        if len(set(shapes.values())) != 1:
            listed = ", ".join(f"{name} {shape}" for name, shape in shapes.items())
            raise PreviewError(f"the volumes are not on one grid: {listed}")
        if min(self.spacing_mm) <= 0:
            raise PreviewError(f"spacing must be positive, not {self.spacing_mm}")

    @property
    def uncertainty_top(self) -> float:
        """The heat scale's top: the map's largest finite value (1 for an all-zero map)."""
        finite = self.uncertainty[np.isfinite(self.uncertainty)]
        top = float(finite.max()) if finite.size else 0.0
        return top if top > 0.0 else 1.0


def robust_window(values: np.ndarray) -> tuple[float, float]:
    """(low, high) at the 1st and 99.5th percentiles: bright bone or a metal clip does
    not squash the vessels into the top grey levels."""
    finite = values[np.isfinite(values)]
    if not finite.size:
        raise PreviewError("the source image has no finite values")
    low, high = (float(v) for v in np.percentile(finite, WINDOW_PERCENTILES))
    return (low, high if high > low else low + 1.0)


def grey(image: np.ndarray, window: tuple[float, float]) -> np.ndarray:
    """An RGB array (uint8) of ``image`` mapped linearly from ``window`` to black..white."""
    low, high = window
    scaled = np.clip((np.nan_to_num(image, nan=low) - low) / (high - low), 0.0, 1.0)
    level = np.round(scaled * 255).astype(np.uint8)
    return np.repeat(level[..., None], 3, axis=2)


def heat(values: np.ndarray, top: float) -> np.ndarray:
    """An RGB array (uint8) of ``values`` in the heat scale from 0 to ``top``."""
    scaled = np.clip(np.nan_to_num(values, nan=0.0) / top, 0.0, 1.0)
    return HEAT_LUT[np.round(scaled * 255).astype(np.intp)]


def blend(rgb: np.ndarray, mask: np.ndarray, colour: tuple[int, int, int],
          alpha: float) -> np.ndarray:  # fmt: skip
    """``rgb`` with ``colour`` mixed in at ``alpha`` where ``mask`` is set (a copy)."""
    out = rgb.astype(np.float32)
    out[mask] = (1.0 - alpha) * out[mask] + alpha * np.asarray(colour, dtype=np.float32)
    return np.round(out).astype(np.uint8)


def outline(mask: np.ndarray) -> np.ndarray:
    """The pixels of ``mask`` with a 4-neighbour outside it (edges of the image count)."""
    padded = np.pad(mask.astype(bool), 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask.astype(bool) & ~inner


def depth_shaded(mask: np.ndarray, axis: int = 0) -> np.ndarray:
    """A projection of a 3D mask along ``axis``: SEG colour where any voxel is set,
    shaded by the depth of the first one (nearest brightest), on the empty field."""
    hit = mask.any(axis=axis)
    depth = np.argmax(mask, axis=axis).astype(np.float32) / max(mask.shape[axis] - 1, 1)
    shade = NEAREST_SHADE - (NEAREST_SHADE - FARTHEST_SHADE) * depth
    rgb = np.empty((*hit.shape, 3), dtype=np.uint8)
    rgb[...] = EMPTY_FIELD
    colour = np.asarray(SEG_RGB, dtype=np.float32)
    rgb[hit] = np.round(shade[hit, None] * colour).astype(np.uint8)
    return rgb


def _panel(rgb: np.ndarray, row_mm: float, column_mm: float) -> Image.Image:
    """``rgb`` as an image of ``PANEL_PX`` on its long side, in physical proportions
    (nearest neighbour when enlarging, so voxels stay voxels)."""
    rows, columns = rgb.shape[:2]
    height, width = rows * row_mm / column_mm, float(columns)
    factor = PANEL_PX / max(height, width)
    size = (max(1, round(width * factor)), max(1, round(height * factor)))
    method = Image.Resampling.NEAREST if factor >= 1.0 else Image.Resampling.BOX
    return Image.fromarray(np.ascontiguousarray(rgb), "RGB").resize(size, method)


def _font() -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=13)  # Pillow's bundled font: nothing to fetch


def _captioned(panel: Image.Image, caption: str, footer: Image.Image | None = None) -> Image.Image:
    extra = footer.height if footer is not None else 0
    framed = Image.new("RGB", (panel.width, CAPTION_PX + panel.height + extra), CANVAS)
    ImageDraw.Draw(framed).text((4, 4), caption, fill=(230, 230, 230), font=_font())
    framed.paste(panel, (0, CAPTION_PX))
    if footer is not None:
        framed.paste(footer, (0, CAPTION_PX + panel.height))
    return framed


def _scale_bar(width: int, top: float) -> Image.Image:
    """The heat scale as a strip with its two ends labelled."""
    strip = HEAT_LUT[np.linspace(0, 255, width).astype(np.intp)]
    bar = Image.new("RGB", (width, BAR_PX + 16), CANVAS)
    bar.paste(Image.fromarray(np.repeat(strip[None], BAR_PX, axis=0), "RGB"), (0, 0))
    draw = ImageDraw.Draw(bar)
    draw.text((2, BAR_PX + 1), "0", fill=(200, 200, 200), font=_font())
    label = f"{top:.3g} nats"
    draw.text((width - 2 - draw.textlength(label, font=_font()), BAR_PX + 1), label,
              fill=(200, 200, 200), font=_font())  # fmt: skip
    return bar


def _side_by_side(left: Image.Image, right: Image.Image) -> Image.Image:
    height = max(left.height, right.height)
    picture = Image.new("RGB", (left.width + GAP_PX + right.width, height), CANVAS)
    picture.paste(left, (0, 0))
    picture.paste(right, (left.width + GAP_PX, 0))
    return picture


def _picture(volumes: ResultVolumes, vessels: np.ndarray, uncertainty: np.ndarray,
             mask: np.ndarray, view: str) -> Image.Image:  # fmt: skip
    _, row_mm, column_mm = volumes.spacing_mm
    top = volumes.uncertainty_top
    left = _captioned(_panel(vessels, row_mm, column_mm), f"{view}: vessel SEG")
    # The outline is drawn at display size: one screen pixel wide, not one voxel.
    hot = np.asarray(_panel(heat(uncertainty, top), row_mm, column_mm))
    edge = np.asarray(_panel(grey(mask.astype(np.float32), (0.0, 1.0)), row_mm, column_mm))
    right_panel = Image.fromarray(blend(hot, outline(edge[..., 0] >= 128), OUTLINE_RGB, 1.0))
    right = _captioned(
        right_panel,
        f"{view}: uncertainty ({volumes.uncertainty_name})",
        _scale_bar(right_panel.width, top),
    )
    return _side_by_side(left, right)


def mip_picture(volumes: ResultVolumes) -> Image.Image:
    """Maximum-intensity projection along the slices: vessels | uncertainty."""
    mask = volumes.mask.astype(bool)
    projected = np.asarray(mask.any(axis=0), dtype=bool)
    if volumes.background is not None:
        background = volumes.background.max(axis=0)
        vessels = blend(grey(background, robust_window(background)), projected, SEG_RGB,
                        OVERLAY_ALPHA)  # fmt: skip
    else:
        vessels = depth_shaded(mask, axis=0)
    return _picture(volumes, vessels, volumes.uncertainty.max(axis=0), projected, "MIP")


def axial_picture(volumes: ResultVolumes, index: int) -> Image.Image:
    """Axial slice ``index`` (0-based, in the volumes' slice order): vessels | uncertainty."""
    count = volumes.mask.shape[0]
    if not 0 <= index < count:
        raise PreviewError(f"slice {index} is outside the volume's {count} slices")
    mask = np.asarray(volumes.mask[index], dtype=bool)
    if volumes.background is not None:
        # One window for the whole series: slices compare like in a viewer.
        base = grey(volumes.background[index], robust_window(volumes.background))
    else:
        base = np.empty((*mask.shape, 3), dtype=np.uint8)
        base[...] = EMPTY_FIELD
    vessels = blend(base, mask, SEG_RGB, OVERLAY_ALPHA)
    view = f"slice {index + 1}/{count}"
    return _picture(volumes, vessels, volumes.uncertainty[index], mask, view)


def telling_slices(mask: np.ndarray, count: int = 3) -> list[int]:
    """``count`` slice indices spread over the slices that hold vessel (at the quantiles
    1/(count+1) ... count/(count+1) of them); over all slices when the SEG is empty."""
    holding = np.flatnonzero(mask.reshape(mask.shape[0], -1).any(axis=1))
    candidates = holding if holding.size else np.arange(mask.shape[0])
    picks = [candidates[int(len(candidates) * (n + 1) / (count + 1))] for n in range(count)]
    return sorted({int(k) for k in picks})


def png_bytes(picture: Image.Image) -> bytes:
    """The picture as PNG (lossless: a thin vessel must not smear into its neighbours)."""
    buffer = io.BytesIO()
    picture.save(buffer, "PNG", optimize=True)
    return buffer.getvalue()
