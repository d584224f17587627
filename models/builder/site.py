"""A site build: its dataset mixed with synthetic studies, fine-tuning sources, data versions.

Mixing: the site's training cases plus ``round(share / (1 - share) * n_site)`` synthetic
training cases, taken in order from the synthetic training split and repeated when the
split is smaller (training draws cases uniformly, so the case share is the patch share).

Fine-tuning: the appliance ships ONNX members, which cannot be trained, and their
initialisers do not map back to every PyTorch parameter (normalisation and activation
weights are renamed or folded by the exporter). So a member is fine-tuned from the
builder's own PyTorch checkpoint (``<member>.pt``, written by each build in its work
folder), and only after that checkpoint, exported again, reproduces the reference
member (the shipped ONNX file, hash-checked against its manifest) within the recipe's
parity tolerance: the start point is provably the shipped member, not a similar one.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from models.builder.config import BuildRecipe, MemberRecipe, SiteDataRecipe
from models.builder.datasets import SiteDataset, load_site_dataset, read_site_test
from models.builder.export import parity_inputs, parity_max_difference
from models.builder.train import build_network, prepare_cases
from models.loader import read_verified
from models.manifest import DatasetVersion, read_manifest
from synthetic.splits import LoadedCase, SplitIndex

log = logging.getLogger(__name__)


class FineTuneSourceError(RuntimeError):
    """No usable start point for fine-tuning a member."""


@dataclass(frozen=True)
class SitePlan:
    """What a site build trains on and from."""

    dataset: SiteDataset
    train_cases: list[LoadedCase]
    synthetic_cases: int
    achieved_share: float
    recipe: BuildRecipe  # members with the fine-tuning iterations and learning rate
    initial_states: dict[str, dict[str, torch.Tensor]]
    fine_tuned_from: dict[str, str]  # member -> checkpoint SHA-256
    lock_file: Path


def lock_file(site: SiteDataRecipe, work_dir: Path) -> Path:
    return site.test_lock_file or work_dir / "site-test-lock.json"


def mix(
    site_cases: list[LoadedCase], synthetic: list[LoadedCase], share: float
) -> list[LoadedCase]:
    wanted = round(share / (1.0 - share) * len(site_cases)) if share > 0 else 0
    if wanted and not synthetic:
        raise ValueError("synthetic_share > 0 but the synthetic training split is empty")
    return list(site_cases) + [synthetic[i % len(synthetic)] for i in range(wanted)]


def _fine_tuned(member: MemberRecipe, site: SiteDataRecipe) -> MemberRecipe:
    return member.model_copy(
        update={
            "iterations": site.fine_tune_iterations or member.iterations,
            "learning_rate": member.learning_rate * site.fine_tune_learning_rate_scale,
        }
    )


def _checkpoint_state(
    member: MemberRecipe, site: SiteDataRecipe, recipe: BuildRecipe, probe: LoadedCase
) -> tuple[dict[str, torch.Tensor], str]:
    if site.checkpoint_dir is None:
        raise FineTuneSourceError("start_from 'checkpoints' needs checkpoint_dir")
    path = site.checkpoint_dir / f"{member.name}.pt"
    if not path.is_file():
        raise FineTuneSourceError(
            f"{path}: no builder checkpoint for member {member.name!r}. ONNX members cannot "
            "be trained: fine-tuning starts from the PyTorch checkpoint the builder wrote "
            "when it trained them (make models writes var/builder/<member>.pt)"
        )
    state = torch.load(path, weights_only=True)
    network = build_network(member)
    try:
        network.load_state_dict(state)
    except RuntimeError as error:
        raise FineTuneSourceError(
            f"{path} does not fit member {member.name!r} of the recipe: {error}"
        ) from error
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    if site.reference_dir is not None:
        reference = {m.name: m for m in read_manifest(site.reference_dir).members}
        if member.name not in reference:
            raise FineTuneSourceError(f"{site.reference_dir} has no member {member.name!r}")
        onnx_bytes = read_verified(site.reference_dir, reference[member.name])
        real = prepare_cases([probe], member)[0].image
        patch = member.patch_size
        real_patch = np.pad(
            real, [(0, max(0, p - n)) for n, p in zip(real.shape, patch, strict=True)], "edge"
        )[: patch[0], : patch[1], : patch[2]]
        difference = parity_max_difference(
            network.eval(), onnx_bytes, parity_inputs(real_patch, patch, member.seed)
        )
        if not difference <= recipe.parity_tolerance:
            raise FineTuneSourceError(
                f"{path} is not member {member.name!r} of {site.reference_dir}: exported, it "
                f"differs by {difference:.3g} in probability (tolerance "
                f"{recipe.parity_tolerance:.1g})"
            )
        log.info(
            "%s: checkpoint reproduces the reference member (|dp| %.1e)", member.name, difference
        )
    return state, digest


def validate_site(recipe: BuildRecipe, work_dir: Path) -> SiteDataset:
    """Read and validate the site dataset (its test cases locked, the read audited)."""
    site = recipe.site
    assert site is not None
    return load_site_dataset(
        site.path,
        site.format,
        max_spacing_mm=site.max_spacing_mm,
        lock_file=lock_file(site, work_dir),
        expected_train_sha256=site.train_sha256,
        vessel_labels=site.vessel_labels,
    )


def plan_site_build(
    recipe: BuildRecipe,
    synthetic_train: list[LoadedCase],
    work_dir: Path,
    dataset: SiteDataset | None = None,
) -> SitePlan:
    """Mix the (validated) site dataset with synthetic cases; choose each member's start."""
    site = recipe.site
    assert site is not None
    dataset = dataset or validate_site(recipe, work_dir)
    cases = mix(dataset.train, synthetic_train, site.synthetic_share)
    synthetic_count = len(cases) - len(dataset.train)
    states: dict[str, dict[str, torch.Tensor]] = {}
    sources: dict[str, str] = {}
    members = recipe.members
    if site.start_from == "checkpoints":
        for member in recipe.members:
            states[member.name], sources[member.name] = _checkpoint_state(
                member, site, recipe, dataset.train[0]
            )
        members = tuple(_fine_tuned(m, site) for m in recipe.members)
    log.info(
        "site dataset %s (%s): %d training cases + %d synthetic; %s",
        site.path.name,
        dataset.format,
        len(dataset.train),
        synthetic_count,
        "fine-tuning from checkpoints" if states else "training from scratch",
    )
    return SitePlan(
        dataset=dataset,
        train_cases=cases,
        synthetic_cases=synthetic_count,
        achieved_share=synthetic_count / len(cases),
        recipe=recipe.model_copy(update={"members": members}),
        initial_states=states,
        fine_tuned_from=sources,
        lock_file=lock_file(site, work_dir),
    )


def read_site_test_cases(plan: SitePlan) -> list[LoadedCase] | None:
    """The site's locked test cases for the final evaluation (read again, audited)."""
    site = plan.recipe.site
    if site is None or plan.dataset.test_sha256 is None:
        return None
    return read_site_test(
        site.path,
        site.format,
        max_spacing_mm=site.max_spacing_mm,
        lock_file=plan.lock_file,
        purpose="builder: final evaluation of the ensemble on the site's locked test cases",
        vessel_labels=site.vessel_labels,
    )


def site_versions(plan: SitePlan, mixed_sha256: str) -> list[DatasetVersion]:
    dataset = plan.dataset
    versions = [
        DatasetVersion(
            role="site-train",
            source=dataset.root.name,
            content_sha256=dataset.train_sha256,
            cases=len(dataset.train),
            format=dataset.format,
        ),
        DatasetVersion(
            role="train",
            source=f"{dataset.root.name} + synthetic share {plan.achieved_share:.3f}",
            content_sha256=mixed_sha256,
            cases=len(plan.train_cases),
        ),
    ]
    if dataset.test_sha256 is not None:
        versions.append(
            DatasetVersion(
                role="site-test",
                source=dataset.root.name,
                content_sha256=dataset.test_sha256,
                cases=dataset.test_cases,
                format=dataset.format,
            )
        )
    return versions


def synthetic_versions(indices: list[SplitIndex]) -> list[DatasetVersion]:
    return [
        DatasetVersion(
            role=f"synthetic-{index.split}",
            source=f"synthetic generator {index.generator_version}",
            content_sha256=index.content_sha256,
            cases=len(index.cases),
        )
        for index in indices
    ]
