"""Per-study features for drift monitoring, and the reference profile built from them.

The builder records the distribution of these features over the validation split in the
manifest; the service computes the same features for every live study (one definition,
used by both) so drift reports compare like with like.
"""

from __future__ import annotations

import numpy as np

from models.manifest import FeatureReference

FEATURE_NAMES = (
    "intensity_p50",
    "intensity_iqr",
    "slice_spacing_mm",
    "pixel_spacing_mm",
    "vessel_fraction",
    "uncertainty_score",
)


def study_features(
    image: np.ndarray,
    spacing: tuple[float, float, float],
    mean_probability: np.ndarray,
    uncertainty_score: float,
    threshold: float = 0.5,
) -> dict[str, float]:
    p25, p50, p75 = np.percentile(image, [25.0, 50.0, 75.0])
    return {
        "intensity_p50": float(p50),
        "intensity_iqr": float(p75 - p25),
        "slice_spacing_mm": float(spacing[0]),
        "pixel_spacing_mm": float(np.sqrt(spacing[1] * spacing[2])),
        "vessel_fraction": float((mean_probability >= threshold).mean()),
        "uncertainty_score": float(uncertainty_score),
    }


def reference_profile(rows: list[dict[str, float]]) -> dict[str, FeatureReference]:
    if not rows:
        raise ValueError("a reference profile needs at least one study")
    profile = {}
    for name in FEATURE_NAMES:
        values = np.asarray([row[name] for row in rows], dtype=float)
        p05, p50, p95 = np.percentile(values, [5.0, 50.0, 95.0])
        profile[name] = FeatureReference(
            mean=float(values.mean()),
            std=float(values.std()),
            p05=float(p05),
            p50=float(p50),
            p95=float(p95),
        )
    return profile
