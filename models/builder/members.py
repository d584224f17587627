"""Train (or fine-tune) each member of a recipe and export it to ONNX with the parity check."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import onnxruntime as ort
import torch

from models.builder.config import BuildRecipe
from models.builder.export import export_with_parity
from models.builder.site import SitePlan
from models.builder.train import build_network, prepare_cases, train_member
from models.loader import session_options
from synthetic.splits import LoadedCase

if TYPE_CHECKING:
    from models.builder.tracking import Tracker

log = logging.getLogger(__name__)


def onnx_session(path: Path, threads: int) -> ort.InferenceSession:
    """A CPU session with the appliance's own options (``models.loader.session_options``)."""
    return ort.InferenceSession(
        str(path), sess_options=session_options(threads), providers=["CPUExecutionProvider"]
    )


def train_and_export(
    recipe: BuildRecipe,
    train_cases: list[LoadedCase],
    train_sha256: str,
    val_cases: list[LoadedCase],
    out_dir: Path,
    work_dir: Path,
    reuse_checkpoints: bool,
    fine_tune: SitePlan | None = None,
    tracker: Tracker | None = None,
) -> list[ort.InferenceSession]:
    by_member = {
        m.name: [c for c in train_cases if c.modality.value in m.training_modalities]
        for m in recipe.members
    }
    for member_recipe in recipe.members:  # before any member trains: fail fast
        if not by_member[member_recipe.name]:
            raise ValueError(
                f"member {member_recipe.name} trains on "
                f"{'+'.join(member_recipe.training_modalities)} studies, but the training data "
                "holds none (a site build needs synthetic studies of that modality: "
                "synthetic_share > 0)"
            )
    sessions = []
    for member_recipe in recipe.members:
        checkpoint = work_dir / f"{member_recipe.name}.pt"
        recipe_file = work_dir / f"{member_recipe.name}.recipe.json"
        # A checkpoint is reused only for the same recipe on the same training data
        # (and, when fine-tuned, from the same start point).
        start = fine_tune.fine_tuned_from.get(member_recipe.name) if fine_tune else None
        trained_on = json.dumps(
            {"recipe": member_recipe.model_dump(mode="json"), "train": train_sha256}
            | ({"from": start} if start else {}),
            sort_keys=True,
        )
        if (
            reuse_checkpoints
            and checkpoint.is_file()
            and recipe_file.is_file()
            and recipe_file.read_text() == trained_on
        ):
            network = build_network(member_recipe)
            network.load_state_dict(torch.load(checkpoint, weights_only=True))
            network.eval()
            log.info("%s: reusing checkpoint %s", member_recipe.name, checkpoint)
        else:
            on_loss, flush = tracker.loss_logger(member_recipe.name) if tracker else (None, None)
            network = train_member(
                by_member[member_recipe.name],
                member_recipe,
                recipe.torch_threads,
                initial_state=fine_tune.initial_states.get(member_recipe.name)
                if fine_tune
                else None,
                on_loss=on_loss,
            )
            if flush is not None:
                flush()
            torch.save(network.state_dict(), checkpoint)
            recipe_file.write_text(trained_on)
        real = prepare_cases(val_cases[:1], member_recipe)[0].image
        pz, py, px = member_recipe.patch_size
        real_patch = np.pad(
            real,
            [(0, max(0, p - n)) for n, p in zip(real.shape, (pz, py, px), strict=True)],
            mode="edge",
        )[:pz, :py, :px]
        destination = out_dir / f"{member_recipe.name}.onnx"
        difference = export_with_parity(
            network,
            member_recipe.patch_size,
            recipe.onnx_opset,
            destination,
            real_patch,
            recipe.parity_tolerance,
            seed=member_recipe.seed,
        )
        log.info("%s: exported, parity max |dp| = %.2e", member_recipe.name, difference)
        sessions.append(onnx_session(destination, recipe.torch_threads))
    return sessions
