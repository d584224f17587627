"""The model card: Markdown + PNG figures generated from the ensemble manifest.

One number, one source: every figure in the card is read from ``manifest.json``, so the
card cannot disagree with what the appliance loads. Written next to the manifest by the
builder (``python -m models.builder``, or ``--card-only`` to redraw it from an existing
manifest), shipped in the offline bundle and referenced from the risk file
(``compliance/data/risks.yaml``, HAZ-001, HAZ-002, HAZ-007). Structure after Mitchell et
al., "Model Cards for Model Reporting" (2019).
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from models.manifest import Calibration, EnsembleManifest, FailureDetection, ShiftResult

CARD_NAME = "model_card.md"
FIGURES = {
    "shift": "model_card_shift_dice.png",
    "risk": "model_card_risk_coverage.png",
    "reliability": "model_card_reliability.png",
}
GOAL_DICE = 0.85
FALSE_FLAG_GOAL = 0.05  # issue 11: flagged share of successful clean studies
# Fixed metadata so the PNG bytes depend on the manifest only (reproducible builds).
_PNG_METADATA = {"Software": None, "Creation Time": None}


def _save(figure: plt.Figure, path: Path) -> None:
    figure.tight_layout()
    figure.savefig(path, dpi=110, metadata=_PNG_METADATA)
    plt.close(figure)


def _shift_figure(rows: tuple[ShiftResult, ...], path: Path) -> None:
    modalities = sorted({r.modality for r in rows})
    figure, axes = plt.subplots(1, len(modalities), figsize=(6.0 * len(modalities), 4.2))
    axes = axes if len(modalities) > 1 else [axes]
    for axis, modality in zip(axes, modalities, strict=True):
        mine = [r for r in rows if r.modality == modality and r.family != "clean"]
        families = sorted({r.family for r in mine})
        for offset, severity in enumerate(("mild", "moderate", "severe")):
            values = [
                next((r.dice for r in mine if r.family == f and r.severity == severity), 0.0)
                for f in families
            ]
            axis.bar(
                [i + (offset - 1) * 0.27 for i in range(len(families))],
                values,
                0.27,
                label=severity,
            )
        clean = next((r.dice for r in rows if r.modality == modality and r.family == "clean"), None)
        if clean is not None:
            axis.axhline(clean, color="black", linewidth=1, label=f"clean {clean:.3f}")
        axis.axhline(GOAL_DICE, color="red", linestyle="--", linewidth=1, label="goal 0.85")
        axis.set_xticks(range(len(families)), families, rotation=40, ha="right")
        axis.set_ylim(0.0, 1.0)
        axis.set_ylabel("ensemble Dice (test seeds)")
        axis.set_title(f"{modality}: Dice per shift family and severity")
        axis.legend(fontsize=7, loc="lower left")
    _save(figure, path)


def _risk_figure(manifest: EnsembleManifest, path: Path) -> None:
    detection = manifest.failure_detection
    assert detection is not None
    coverage = [c for c, _ in detection.risk_coverage]
    risk = [r for _, r in detection.risk_coverage]
    figure, axis = plt.subplots(figsize=(5.0, 4.0))
    axis.plot(coverage, risk, label=f"{detection.score} (AURC {detection.aurc:.3f})")
    axis.set_xlabel("coverage (studies kept, most trusted first)")
    axis.set_ylabel("risk: mean 1 - Dice of kept studies")
    axis.set_title("Risk-coverage, test seeds with shift suite")
    axis.set_xlim(0.0, 1.0)
    axis.set_ylim(0.0, max([*risk, 0.05]) * 1.1)
    axis.legend(fontsize=8)
    _save(figure, path)


def _reliability_figure(manifest: EnsembleManifest, path: Path) -> None:
    calibration = manifest.voxel_calibration
    assert calibration is not None
    figure, axis = plt.subplots(figsize=(4.6, 4.4))
    axis.plot([0, 1], [0, 1], color="grey", linestyle=":", linewidth=1)
    for label, bins, ece in (
        ("before", calibration.reliability_before, calibration.test_ece_before),
        (
            f"T = {calibration.temperature:g}",
            calibration.reliability_after,
            calibration.test_ece_after,
        ),
    ):
        used = [b for b in bins if b.voxels]
        axis.plot(
            [b.confidence for b in used],
            [b.accuracy for b in used],
            marker="o",
            markersize=3,
            label=f"{label} (ECE {ece:.4f})",
        )
    axis.set_xlabel("predicted vessel probability")
    axis.set_ylabel("observed vessel frequency")
    axis.set_title("Reliability near vessels (test)")
    axis.legend(fontsize=8)
    _save(figure, path)


def _robustness_rows(manifest: EnsembleManifest) -> list[str]:
    lines = [
        "| modality | family | severity | cases | Dice mean | Dice min | clDice | HD95 mm "
        "| failures | flagged | failures flagged |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in manifest.robustness:
        mark = " **below goal**" if r.severity == "moderate" and r.dice < GOAL_DICE else ""
        lines.append(
            f"| {r.modality} | {r.family} | {r.severity} | {r.cases} | {r.dice:.3f}{mark} | "
            f"{r.dice_min:.3f} | {r.cldice:.3f} | {r.hd95_mm:.2f} | {r.failures} | {r.flagged} "
            f"| {r.failures_flagged} |"
        )
    return lines


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4f}"


def render_card(manifest: EnsembleManifest) -> str:
    detection = manifest.failure_detection
    calibration = manifest.voxel_calibration
    provenance = manifest.provenance
    site_build = any(d.role == "site-train" for d in provenance.datasets)
    lines = [
        f"# Model card: {manifest.name} {manifest.version}",
        "",
        "Generated by the builder from `manifest.json` (every figure here is read from it).",
        f"Created {provenance.created}, code {provenance.code_commit}, generator "
        f"{provenance.generator_version}.",
        "",
        "## Intended use",
        "Segmentation of vessel lumens in CT angiography (contrast-enhanced, Hounsfield "
        "units) and MR time-of-flight angiography, as decision support: every result is "
        "reviewed by a qualified clinician against the source images. A study whose "
        "uncertainty score exceeds the threshold is still answered and marked for review.",
        "Not intended for: non-contrast CT, other MR sequences, paediatric or "
        "interventional use, or any use without review.",
        "",
        "## Training data",
        (
            "Synthetic (`synthetic/`), with the site's own studies below"
            if site_build
            else "Synthetic only (`synthetic/`)"
        )
        + ": vessel trees with Murray's-law radii rendered with "
        "randomised scanner physics (domain randomisation, `synthetic.appearance`): CT "
        "lumens 150-700 HU, MR lumens 2-15x the tissue, air around the body, with and "
        "without fat and bone, bias up to +/-40 %, noise x0.5-x4 (Gaussian CT, Rician MR), "
        "slices 0.4-3 mm, in-plane 0.3-1 mm, gamma, metal streaks, rings, motion ghosting; "
        "plus MONAI intensity augmentation per patch (`models.builder.augment`). "
        f"Train split SHA-256 `{provenance.train_split_sha256}`, validation "
        f"`{provenance.val_split_sha256}`, locked test `{manifest.data.test_split_sha256}` "
        f"({manifest.data.test_cases} studies, typical physics).",
        *_site_lines(manifest),
        "",
        "## Members",
        "| member | runs on | trained on | architecture | patch | spacing mm | iterations "
        "| Dice CT | Dice MR | CPU ms / window |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for m in manifest.members:
        ms = "n/a" if m.cpu_ms_per_window is None else f"{m.cpu_ms_per_window:.0f}"
        dice = {k: f"{v.dice:.3f}" for k, v in m.metrics.items()}
        lines.append(
            f"| {m.name} | {'+'.join(m.modalities)} | {'+'.join(m.training_modalities)} | "
            f"{m.architecture} | {'x'.join(map(str, m.patch_size))} | "
            f"{m.input_spacing_mm[0]:g} | {m.training_iterations} | "
            f"{dice.get('CT', '-')} | {dice.get('MR', '-')} | {ms} |"
        )
    lines += [
        "",
        'A study runs on the members whose "runs on" names its modality; a member\'s Dice '
        "is its own, on the locked test studies it runs on.",
        "CPU milliseconds are ONNX Runtime (CPU provider, 2 threads) on the build machine, "
        "one 1-window batch, median of 5: a guide to relative cost, not a benchmark.",
        "Normalisation (every member): CT `(HU - 40) / 400` clipped to [-2.6, 5]; MR "
        "`log2(x / tissue level) / 2` clipped to [-1.5, 2.5], tissue level = median of the "
        "body voxels (air found by Otsu on log intensity and left out).",
        _mask_rules_line(manifest.calibration),
        "",
        "## Locked test split (typical physics)",
        "| modality | cases | Dice | clDice | HD95 mm |",
        "|---|---|---|---|---|",
    ]
    for modality, metrics in manifest.ensemble_metrics.items():
        lines.append(
            f"| {modality} | {metrics.cases} | {metrics.dice:.4f} | {metrics.cldice:.4f} | "
            f"{metrics.hd95_mm:.2f} |"
        )
    lines += [
        "",
        "## Robustness: the shift suite on the test seeds",
        "Each family moves one physical parameter of the test studies (same vessels) at "
        "three severities (`synthetic/shifts.py`). Failures are studies with Dice < 0.5; "
        "flagged are studies above the review threshold. HD95 of an empty mask counts as "
        "the field-of-view diagonal.",
        "",
        f"![Dice per shift family]({FIGURES['shift']})",
        "",
        *_robustness_rows(manifest),
        "",
    ]
    if detection is not None:
        lines += [
            "## Failure detection",
            f"Score: `{detection.score}` (highest validation failure AUROC among the "
            "candidates, lowest AURC on a tie); "
            f"threshold {detection.threshold:.4f}, rule: {manifest.calibration.rule}. A study "
            f"with less than {manifest.calibration.min_vessel_ml} ml of vessel gets the top "
            "score (an angiogram without vessels failed).",
            "",
            f"On the test seeds ({detection.studies} studies, {detection.failures} failures): "
            f"recall {_fmt(detection.recall)}, false flags on clean studies "
            f"{detection.false_flag_rate_clean:.4f}, AUROC {_fmt(detection.auroc)}, "
            f"AURC {detection.aurc:.4f}.",
            "",
            "| modality | severity | studies | failures | recall | flagged | false flags |",
            "|---|---|---|---|---|---|---|",
            *[
                f"| {row.modality or 'both'} | {row.severity} | {row.studies} | "
                f"{row.failures} | {_fmt(row.recall)} | {row.flag_rate:.3f} | "
                f"{row.false_flag_rate:.3f} |"
                for row in (*detection.by_severity, *detection.by_modality)
            ],
            "",
            "| score | validation AUROC | validation AURC | test AUROC | test AURC |",
            "|---|---|---|---|---|",
        ]
        for val, test in zip(
            detection.candidates_validation, detection.candidates_test, strict=True
        ):
            lines.append(
                f"| {val.score} | {_fmt(val.auroc)} | {val.aurc:.4f} | {_fmt(test.auroc)} | "
                f"{test.aurc:.4f} |"
            )
        lines += ["", f"![Risk-coverage]({FIGURES['risk']})", ""]
    if calibration is not None:
        lines += [
            "## Voxel calibration",
            f"Temperature scaling of the fused probability, fitted on validation: T = "
            f"{calibration.temperature:g} (the 0.5 cut, and so the mask, is unchanged). ECE "
            f"over {calibration.region}: validation {calibration.validation_ece_before:.4f} -> "
            f"{calibration.validation_ece_after:.4f}, test {calibration.test_ece_before:.4f} -> "
            f"{calibration.test_ece_after:.4f}.",
            "",
            f"![Reliability diagram]({FIGURES['reliability']})",
            "",
        ]
    lines += [
        "## Limits",
        (
            "- Trained on the site's studies and synthetic ones; the site's own test cases "
            "are few and measure its scanners only. Real scanners"
            if site_build
            else "- Trained and measured on synthetic studies only; no patient data has been "
            "used. Real scanners"
        )
        + " may show what no family here covers (flow artefacts, venous "
        "contamination, stents, coils, aneurysms larger than the trees here).",
        "- Fields of view are small (about 40 x 48 x 48 mm); whole-head or whole-body "
        "volumes are processed in windows but were not part of the measurement.",
        "- A NIfTI input has no modality: negative values below -50 are read as CT (HU), "
        "anything else as MR; a z-scored MR volume would be misread.",
        "- Rows marked **below goal** are shifts at moderate severity where the ensemble "
        "does not reach Dice 0.85; studies there rely on the review flag.",
        *_over_flagged_lines(detection),
        "- MR TOF: fat is bright (1.6-2.6x the tissue) and overlaps faint lumens (2-4x) in "
        "intensity; only shape tells them apart, which the members learn imperfectly: "
        "faint lumens are missed and fat is marked in studies with few vessels. The "
        "faint-component rule removes fat islands far dimmer than the lumens; fat touching "
        "a vessel, or as bright as the study's faint lumens, remains.",
        "",
        "## Reproducibility",
        f"Kernel pins {provenance.kernel_pins or 'none'}, CPU capability "
        f"{provenance.cpu_capability or 'unrecorded'}; {provenance.determinism_tolerance}."
        + (
            f" Measured again with commit {provenance.evaluation_commit} (same member bytes)."
            if provenance.evaluation_commit
            else ""
        ),
        *(
            f"MLflow run `{run.run_id}` (experiment {run.experiment_id}, {run.tracking_uri})."
            for run in provenance.mlflow_runs
        ),
        "",
    ]
    return "\n".join(lines)


def _over_flagged_lines(detection: FailureDetection | None) -> list[str]:
    """A Limits line for each modality whose clean successes are flagged above the goal:
    one threshold serves both, and the pooled rate can meet the goal while one does not."""
    if detection is None:
        return []
    return [
        f"- {row.modality}: {row.false_flag_rate:.1%} of the successful clean test studies "
        f"are flagged for review (goal <= {FALSE_FLAG_GOAL:.0%}); one threshold serves both "
        "modalities and this one's successes score higher. More reviews, not misses."
        for row in detection.by_modality
        if row.severity == "none" and row.false_flag_rate > FALSE_FLAG_GOAL
    ]


def _site_lines(manifest: EnsembleManifest) -> list[str]:
    """The site's own studies (issue 17): datasets by hash, start point, test results."""
    provenance = manifest.provenance
    site = [d for d in provenance.datasets if d.role in ("site-train", "site-test", "train")]
    if not site:
        return []
    lines = ["", "### The site's own studies", "| dataset | format | cases | content SHA-256 |"]
    lines.append("|---|---|---|---|")
    for d in site:
        lines.append(
            f"| {d.role}: {d.source} | {d.format or '-'} | {d.cases} | `{d.content_sha256}` |"
        )
    if provenance.fine_tuned_from:
        lines.append(
            "Fine-tuned from the builder checkpoints of the reference members (SHA-256: "
            + ", ".join(f"{m} `{h[:16]}`" for m, h in provenance.fine_tuned_from.items())
            + "); each reproduced its ONNX member within the parity tolerance."
        )
    else:
        lines.append("Trained from scratch (the members' seeds).")
    if manifest.site_test_metrics:
        lines += ["", "| site test | cases | Dice | clDice | HD95 mm |", "|---|---|---|---|---|"]
        lines += [
            f"| {modality} | {m.cases} | {m.dice:.4f} | {m.cldice:.4f} | {m.hd95_mm:.2f} |"
            for modality, m in manifest.site_test_metrics.items()
        ]
    return lines


def _mask_rules_line(calibration: Calibration) -> str:
    ratio, growth = calibration.mr_faint_component_ratio, calibration.mr_lumen_growth
    if ratio is None and growth is None:
        return "Post-processing: none beyond the 0.5 cut of the fused probability."
    rules = []
    if ratio is not None:
        rules.append(
            f"mask components whose brightest voxel stands less than {ratio:g} of the "
            "study's lumen contrast above the tissue are dropped (`models/faint_components.py`)"
        )
    if growth is not None:
        rules.append(
            f"the mask grows into voxels joined to it with a fused probability of at least "
            f"{growth.min_probability:g} that stand at least {growth.min_contrast_ratio:g} "
            "of that lumen contrast above the tissue (`models/lumen_growth.py`)"
        )
    return f"Post-processing (MR): {'; then '.join(rules)}; every figure below is measured so."


def write_model_card(manifest: EnsembleManifest, out_dir: Path) -> Path:
    """Write the card and its figures into ``out_dir``; returns the card's path."""
    if manifest.robustness:
        _shift_figure(manifest.robustness, out_dir / FIGURES["shift"])
    if manifest.failure_detection is not None:
        _risk_figure(manifest, out_dir / FIGURES["risk"])
    if manifest.voxel_calibration is not None:
        _reliability_figure(manifest, out_dir / FIGURES["reliability"])
    card = out_dir / CARD_NAME
    card.write_text(render_card(manifest))
    return card
