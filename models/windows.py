"""Sliding-window geometry: the settings, where windows start and how they are blended.

numpy only, so that code that re-implements the inference stage elsewhere
(``benchmarks/gpu_inference_check.py`` on machines without pydantic or onnxruntime-gpu)
takes the same windows and weights from here instead of a copy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class SlidingWindowSettings:
    overlap: float = 0.25
    batch_size: int = 2
    sigma_scale: float = 0.125
    flips: tuple[tuple[int, ...], ...] = ()  # spatial axes (0=z, 1=y, 2=x) to flip for TTA
    screen: bool = False  # skip windows that cannot hold a lumen (models.screen)

    def __post_init__(self) -> None:
        if not 0.0 <= self.overlap < 1.0:
            raise ValueError(f"overlap must be in [0, 1), got {self.overlap}")
        if self.batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {self.batch_size}")


def window_starts(size: int, patch: int, overlap: float) -> list[int]:
    """Where windows of ``patch`` start along an axis of ``size``; the last ends at its edge."""
    if size <= patch:
        return [0]
    stride = max(1, round(patch * (1.0 - overlap)))
    starts = list(range(0, size - patch + 1, stride))
    if starts[-1] != size - patch:
        starts.append(size - patch)
    return starts


def gaussian_importance(patch: Sequence[int], sigma_scale: float) -> np.ndarray:
    """Weights favouring patch centres, so seams between windows do not show."""
    axes = []
    for n in patch:
        centre = (n - 1) / 2.0
        sigma = max(n * sigma_scale, 1e-3)
        axes.append(np.exp(-0.5 * ((np.arange(n) - centre) / sigma) ** 2))
    weights = axes[0][:, None, None] * axes[1][None, :, None] * axes[2][None, None, :]
    weights = weights / weights.max()
    return np.maximum(weights, 1e-3).astype(np.float32)
