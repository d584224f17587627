"""Random vessel trees: branching, tapering, tortuous centrelines with radii.

A tree is grown in a box given in millimetres (z, y, x) from a seeded random generator,
so the same seed always gives the same tree. Radii at bifurcations follow Murray's law
(r_parent^3 = r_a^3 + r_b^3), the classic model of arterial branching.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

STEP_MM = 0.4
MIN_RADIUS_MM = 0.5


@dataclass(frozen=True)
class TreeParameters:
    """How a tree grows; defaults give 0.5-4 mm radii in a ~40 mm box."""

    root_radius_mm: tuple[float, float] = (2.5, 4.0)
    roots: tuple[int, int] = (1, 3)
    branch_length_mm: tuple[float, float] = (8.0, 26.0)
    taper_per_mm: float = 0.006
    tortuosity: float = 0.22
    max_depth: int = 6
    branch_angle_deg: tuple[float, float] = (25.0, 60.0)


@dataclass(frozen=True)
class Branch:
    """One centreline polyline, ``points`` (N, 3) in mm as (z, y, x), and its radii (N,)."""

    points: np.ndarray
    radii: np.ndarray


def _unit(vector: np.ndarray) -> np.ndarray:
    return vector / max(float(np.linalg.norm(vector)), 1e-9)


def _rotate_away(direction: np.ndarray, angle_rad: float, rng: np.random.Generator) -> np.ndarray:
    """A unit vector at ``angle_rad`` from ``direction``, around a random axis."""
    helper = _unit(rng.normal(size=3))
    axis = _unit(np.cross(direction, helper))
    return _unit(np.cos(angle_rad) * direction + np.sin(angle_rad) * axis)


def _inside(point: np.ndarray, box_mm: np.ndarray) -> bool:
    return bool(np.all(point >= 0.0) and np.all(point <= box_mm))


def grow_tree(
    box_mm: tuple[float, float, float],
    rng: np.random.Generator,
    params: TreeParameters | None = None,
) -> list[Branch]:
    """Grow 1-3 trees entering the box from its faces; returns every branch."""
    params = params or TreeParameters()
    box = np.asarray(box_mm, dtype=float)
    branches: list[Branch] = []
    n_roots = int(rng.integers(params.roots[0], params.roots[1] + 1))
    for _ in range(n_roots):
        axis = int(rng.integers(0, 3))
        start = rng.uniform(0.2, 0.8, size=3) * box
        start[axis] = 0.0 if rng.random() < 0.5 else box[axis]
        inward = np.zeros(3)
        inward[axis] = 1.0 if start[axis] == 0.0 else -1.0
        direction = _unit(inward + rng.normal(scale=0.3, size=3))
        radius = float(rng.uniform(*params.root_radius_mm))
        _grow_branch(start, direction, radius, 0, box, rng, params, branches)
    return branches


def _grow_branch(
    start: np.ndarray,
    direction: np.ndarray,
    radius: float,
    depth: int,
    box: np.ndarray,
    rng: np.random.Generator,
    params: TreeParameters,
    out: list[Branch],
) -> None:
    length = float(rng.uniform(*params.branch_length_mm))
    # Longer, straighter trunks; shorter, curlier twigs.
    length *= max(0.4, radius / 3.0)
    points = [start.copy()]
    radii = [radius]
    heading = direction.copy()
    curl = np.zeros(3)
    position = start.copy()
    for _ in range(int(length / STEP_MM)):
        # Tortuosity as a slowly varying curvature (a smoothed random walk of the turn).
        curl = 0.85 * curl + 0.15 * rng.normal(scale=params.tortuosity, size=3)
        heading = _unit(heading + curl)
        position = position + STEP_MM * heading
        radius = max(MIN_RADIUS_MM, radius * (1.0 - params.taper_per_mm * STEP_MM))
        if not _inside(position, box):
            break
        points.append(position.copy())
        radii.append(radius)
    out.append(Branch(points=np.asarray(points), radii=np.asarray(radii)))
    if len(points) < 3 or depth >= params.max_depth or radius <= MIN_RADIUS_MM * 1.05:
        return
    share = float(rng.uniform(0.55, 0.85))
    ratio_a = (share) ** (1.0 / 3.0)
    ratio_b = (1.0 - share) ** (1.0 / 3.0)
    for ratio in (ratio_a, ratio_b):
        child_radius = max(MIN_RADIUS_MM, radius * ratio)
        angle = np.deg2rad(rng.uniform(*params.branch_angle_deg))
        child_direction = _rotate_away(heading, float(angle), rng)
        _grow_branch(position, child_direction, child_radius, depth + 1, box, rng, params, out)
