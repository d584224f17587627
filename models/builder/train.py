"""Patch-based, seeded training of one ensemble member with MONAI + torch (CPU).

Determinism: the member's seed drives numpy and torch, torch runs with deterministic
algorithms and a fixed thread count, and patches are drawn from a seeded generator, so the
same recipe on the same data gives the same weights (bit-identical on the same machine
type and thread count; metrics equal within 1e-3 elsewhere).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from monai.losses import DiceCELoss
from monai.networks.nets import SegResNet, UNet

from models.builder.augment import Augmenter
from models.builder.config import MemberRecipe
from models.inference import resample
from models.normalisation import normalise
from synthetic.splits import LoadedCase

log = logging.getLogger(__name__)


def _param_int(recipe: MemberRecipe, key: str) -> int:
    value = recipe.architecture_params[key]
    if not isinstance(value, int):
        raise ValueError(f"{recipe.name}: architecture parameter {key} must be an integer")
    return value


def _param_ints(recipe: MemberRecipe, key: str) -> tuple[int, ...]:
    value = recipe.architecture_params[key]
    if not isinstance(value, list) or not all(isinstance(v, int) for v in value):
        raise ValueError(f"{recipe.name}: architecture parameter {key} must be a list of integers")
    return tuple(value)


def build_network(recipe: MemberRecipe) -> torch.nn.Module:
    """The MONAI network of a member: 1 input channel, logits of background and vessel."""
    if recipe.architecture == "UNet":
        return UNet(
            spatial_dims=3,
            in_channels=1,
            out_channels=2,
            channels=_param_ints(recipe, "channels"),
            strides=_param_ints(recipe, "strides"),
            num_res_units=_param_int(recipe, "num_res_units"),
        )
    return SegResNet(
        spatial_dims=3,
        in_channels=1,
        out_channels=2,
        init_filters=_param_int(recipe, "init_filters"),
        blocks_down=_param_ints(recipe, "blocks_down"),
        blocks_up=_param_ints(recipe, "blocks_up"),
    )


@dataclass(frozen=True)
class PreparedCase:
    image: np.ndarray  # normalised, on the member's grid
    mask: np.ndarray  # uint8, on the member's grid
    foreground: np.ndarray  # (N, 3) indices of vessel voxels


def prepare_cases(cases: list[LoadedCase], recipe: MemberRecipe) -> list[PreparedCase]:
    """Normalise on the native grid, then resample image and mask to the member spacing."""
    prepared = []
    for case in cases:
        normalised = normalise(case.image, recipe.normalisation, case.modality.value)
        image = resample(normalised, case.geometry.spacing, recipe.input_spacing_mm)
        mask_prob = resample(
            case.mask.astype(np.float32), case.geometry.spacing, recipe.input_spacing_mm
        )
        mask = (mask_prob >= 0.5).astype(np.uint8)
        prepared.append(PreparedCase(image, mask, np.argwhere(mask > 0)))
    return prepared


def _sample_patch(
    case: PreparedCase,
    patch: tuple[int, int, int],
    rng: np.random.Generator,
    foreground_fraction: float,
) -> tuple[np.ndarray, np.ndarray]:
    pads = [(0, max(0, p - n)) for n, p in zip(case.image.shape, patch, strict=True)]
    image = np.pad(case.image, pads, mode="edge")
    mask = np.pad(case.mask, pads)
    if len(case.foreground) and rng.random() < foreground_fraction:
        centre = case.foreground[int(rng.integers(0, len(case.foreground)))]
        start = [
            int(np.clip(c - p // 2 + rng.integers(-p // 4, p // 4 + 1), 0, n - p))
            for c, p, n in zip(centre, patch, image.shape, strict=True)
        ]
    else:
        start = [int(rng.integers(0, n - p + 1)) for p, n in zip(patch, image.shape, strict=True)]
    window = tuple(slice(s, s + p) for s, p in zip(start, patch, strict=True))
    x, y = image[window], mask[window]
    for axis in range(3):
        if rng.random() < 0.5:
            x, y = np.flip(x, axis), np.flip(y, axis)
    turns = int(rng.integers(0, 4))  # patches are cubes: any in-plane quarter turn fits
    x, y = np.rot90(x, turns, axes=(1, 2)), np.rot90(y, turns, axes=(1, 2))
    return np.ascontiguousarray(x, dtype=np.float32), np.ascontiguousarray(y, dtype=np.int64)


def seed_everything(seed: int, threads: int) -> np.random.Generator:
    torch.manual_seed(seed)
    torch.use_deterministic_algorithms(True)
    torch.set_num_threads(threads)
    return np.random.default_rng(seed)


def train_member(
    cases: list[LoadedCase],
    recipe: MemberRecipe,
    threads: int,
    initial_state: Mapping[str, torch.Tensor] | None = None,
    on_loss: Callable[[int, float], None] | None = None,
) -> torch.nn.Module:
    """Train one member; returns the network in eval mode.

    ``initial_state``: weights to start from (fine-tuning), else the seed's initialisation.
    ``on_loss(iteration, loss)``: called with every iteration's loss (experiment tracking).
    """
    rng = seed_everything(recipe.seed, threads)
    prepared = prepare_cases(cases, recipe)
    augment = Augmenter(recipe.augmentation, seed=recipe.seed)
    network = build_network(recipe)
    if initial_state is not None:
        network.load_state_dict(initial_state)
    loss_function = DiceCELoss(to_onehot_y=True, softmax=True)
    optimiser = torch.optim.AdamW(network.parameters(), lr=recipe.learning_rate, weight_decay=1e-5)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimiser, max_lr=recipe.learning_rate, total_steps=recipe.iterations, pct_start=0.1
    )
    network.train()
    started = time.monotonic()
    running = 0.0
    for iteration in range(1, recipe.iterations + 1):
        pairs = [
            _sample_patch(
                prepared[int(rng.integers(0, len(prepared)))],
                recipe.patch_size,
                rng,
                recipe.foreground_fraction,
            )
            for _ in range(recipe.batch_size)
        ]
        images = torch.from_numpy(np.stack([augment(p[0]) for p in pairs])[:, None])
        labels = torch.from_numpy(np.stack([p[1] for p in pairs])[:, None])
        optimiser.zero_grad(set_to_none=True)
        loss = loss_function(network(images), labels)
        loss.backward()
        optimiser.step()
        schedule.step()
        value = loss.item()
        if on_loss is not None:
            on_loss(iteration, value)
        running = 0.95 * running + 0.05 * value if iteration > 1 else value
        if iteration % 100 == 0 or iteration == recipe.iterations:
            log.info(
                "%s: iteration %d/%d, loss %.4f, %.0f s",
                recipe.name,
                iteration,
                recipe.iterations,
                running,
                time.monotonic() - started,
            )
    return network.eval()
