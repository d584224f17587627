"""How stable is a normalisation under shifts? ``python -m benchmarks.normalisation_check``

A member sees normalised values only. A normalisation suits a shift when the lumen cores
and the tissue away from vessels land where they land on the clean study. For each shift
family at moderate and severe severity (``synthetic.shifts``, test seeds, same vessels),
this prints the median normalised lumen and tissue values under the robust z-score of
ensemble 1.x and under the modality-aware normalisation (``models.normalisation``), and
the largest move from the clean study per method, in units of the clean study's
lumen-tissue gap. Families that change the lumen itself
(low/high contrast) are listed but left out of the "largest move" column.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np
from scipy import ndimage

from models.manifest import Normalisation
from models.normalisation import normalise
from synthetic.case import Modality, generate_case
from synthetic.shifts import shifted_case, variants

CONTRAST_FAMILIES = ("low_contrast", "high_contrast")


def robust_zscore(image: np.ndarray) -> np.ndarray:
    """Ensemble 1.x: clip((x - median) / IQR, -5, 25) / 10 over the whole box."""
    p25, median, p75 = np.percentile(image, [25.0, 50.0, 75.0])
    return np.clip((image - median) / max(float(p75 - p25), 1e-3), -5.0, 25.0) / 10.0


def levels(image: np.ndarray, mask: np.ndarray, method: str, modality: str) -> tuple[float, float]:
    values = image.astype(np.float32)
    out = (
        robust_zscore(values)
        if method == "zscore"
        else normalise(values, Normalisation(), modality)
    )
    core = ndimage.binary_erosion(mask, iterations=1)
    tissue = ndimage.binary_dilation(mask, iterations=3) == 0
    # The middle third in-plane is inside the body for every body size of the suite.
    _, rows, columns = values.shape
    tissue[:, : rows // 3, :] = tissue[:, 2 * rows // 3 :, :] = False
    tissue[:, :, : columns // 3] = tissue[:, :, 2 * columns // 3 :] = False
    return float(np.median(out[core])), float(np.median(out[tissue]))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2000, 2001, 2002])
    args = parser.parse_args(argv)
    print(
        "| modality | family | severity | z-score lumen | z-score tissue | modality lumen "
        "| modality tissue |"
    )
    print("|---|---|---|---|---|---|---|")
    worst: dict[tuple[str, str], float] = {}
    for modality in Modality:
        rows = [("clean", "none")] + [
            v for v in variants(modality) if v[1] in ("moderate", "severe")
        ]
        clean: dict[tuple[int, str], tuple[float, float]] = {}
        for family, severity in rows:
            sums = {"zscore": np.zeros(2), "modality": np.zeros(2)}
            for seed in args.seeds:
                case = (
                    generate_case(seed, modality)
                    if family == "clean"
                    else shifted_case(seed, modality, family, severity)  # type: ignore[arg-type]
                )
                for method in sums:
                    lumen, tissue = levels(case.image, case.mask, method, modality.value)
                    sums[method] += (lumen, tissue)
                    if family == "clean":
                        clean[seed, method] = (lumen, tissue)
                    elif family not in CONTRAST_FAMILIES:
                        base = clean[seed, method]
                        # In units of the clean lumen-tissue gap: comparable across methods.
                        gap = max(base[0] - base[1], 1e-6)
                        move = max(abs(lumen - base[0]), abs(tissue - base[1])) / gap
                        key = (modality.value, method)
                        worst[key] = max(worst.get(key, 0.0), move)
            z, m = sums["zscore"] / len(args.seeds), sums["modality"] / len(args.seeds)
            print(
                f"| {modality.value} | {family} | {severity} | {z[0]:.2f} | {z[1]:.2f} | "
                f"{m[0]:.2f} | {m[1]:.2f} |"
            )
    print()
    print("| modality | method | largest move of lumen or tissue, x the clean lumen-tissue gap |")
    print("|---|---|---|")
    for (name, method), move in sorted(worst.items()):
        print(f"| {name} | {method} | {move:.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
