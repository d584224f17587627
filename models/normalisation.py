"""Modality-aware intensity normalisation: one meaning per input value, whatever fills the box.

The first ensemble used a robust z-score over the whole volume. Its scale came from
whatever happened to fill the field of view: air around the body made the IQR span air to
tissue (lumens vanished), a uniform MR background made it tiny (lumens clipped to the
value of CT cortical bone). Here each modality is mapped by its physics instead:

- **CT** is calibrated: Hounsfield units map through one fixed affine window,
  ``(HU - 40) / 400`` clipped to [-2.6, 5] (air -2.6, tissue 0, lumens 150-700 HU at
  0.3-1.65, bone above), as nnU-Net does with fixed CT statistics.
- **MR** has an arbitrary gain and a multiplicative coil bias: values are divided by the
  level of the stationary tissue and log-compressed, ``log2(x / tissue) / 2`` clipped to
  [-1.5, 2.5] (tissue 0, lumens 2-15x the tissue at 0.5-1.95, air at the floor). The
  tissue level is the median of the body voxels; air, when present, is found by Otsu's
  threshold on log intensity and left out (its share of the box says nothing about the
  tissue).

``resolve_modality`` takes the DICOM Modality (0008,0060); for a NIfTI input (no
modality) any value below -50 means Hounsfield units, anything else is treated as MR.
"""

from __future__ import annotations

import numpy as np

from models.manifest import Normalisation

# A lower (air) class is accepted only if it is much darker than the body and not the
# whole image: a small bright class (vessels) must never be taken for "the body".
_AIR_CONTRAST = 4.0
_AIR_MAX_SHARE = 0.8
_LOG_FLOOR = 1e-3


def resolve_modality(declared: str, image: np.ndarray) -> str:
    """ "CT" or "MR" for normalisation: the declared DICOM modality, else from the values.

    Without a declared modality (NIfTI), any voxel below -50 means Hounsfield units (air,
    fat or noise about soft tissue): MR magnitude images are never negative.
    """
    if declared in ("CT", "MR"):
        return declared
    if declared:
        raise ValueError(f"modality {declared!r} is not supported: the ensemble reads CT or MR")
    return "CT" if float(np.min(image)) < -50.0 else "MR"


def _otsu(values: np.ndarray, bins: int = 128) -> float:
    histogram, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    weight = np.cumsum(histogram).astype(np.float64)
    total = weight[-1]
    mean = np.cumsum(histogram * centres)
    between = (mean * total - weight * mean[-1]) ** 2 / np.maximum(weight * (total - weight), 1.0)
    return float(centres[int(np.argmax(between[:-1]))])


def tissue_level(image: np.ndarray) -> float:
    """The MR stationary-tissue level: median of the body voxels (air left out)."""
    sample = np.asarray(image, dtype=np.float32).reshape(-1)[:: max(1, image.size // 400_000)]
    sample = sample[np.isfinite(sample)]
    positive = sample[sample > 0]
    if positive.size < 16:
        return 1.0
    logs = np.log(positive)
    threshold = _otsu(logs)
    lower, upper = logs[logs <= threshold], logs[logs > threshold]
    share = lower.size / logs.size
    is_air = (
        lower.size
        and upper.size
        and share <= _AIR_MAX_SHARE
        and float(np.median(upper) - np.median(lower)) > np.log(_AIR_CONTRAST)
        # Air is the background class: it must outnumber a bright minority (vessels).
        and upper.size >= 0.2 * logs.size
    )
    body = np.exp(upper) if is_air else positive
    return max(float(np.median(body)), _LOG_FLOOR)


def normalisation_reference(image: np.ndarray, modality: str) -> float:
    """What ``normalise`` needs from the whole volume (computed once per study)."""
    return tissue_level(image) if modality == "MR" else 0.0


def normalise(
    image: np.ndarray, spec: Normalisation, modality: str, reference: float | None = None
) -> np.ndarray:
    """The member input (float32) for ``image`` of ``modality`` ("CT" or "MR")."""
    values = np.asarray(image, dtype=np.float32)
    if modality == "CT":
        out = (values - np.float32(spec.ct_centre_hu)) / np.float32(spec.ct_width_hu)
        np.clip(out, spec.ct_clip[0], spec.ct_clip[1], out=out)
        return out
    if modality != "MR":
        raise ValueError(f"cannot normalise modality {modality!r}: CT or MR")
    level = reference if reference is not None else tissue_level(values)
    out = np.maximum(values, np.float32(level * _LOG_FLOOR))
    out /= np.float32(level)
    np.log2(out, out=out)
    out *= np.float32(spec.mr_log2_scale)
    np.clip(out, spec.mr_clip[0], spec.mr_clip[1], out=out)
    return out
