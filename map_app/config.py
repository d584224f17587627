"""The pipeline's settings: one pydantic-settings model, read like every component's.

Sources (``settings.base.load``): defaults, the file named by ``--config`` or
``MINIVESS_CONFIG`` (JSON), secret files in ``MINIVESS_SECRETS_DIR``, then
``MINIVESS_<FIELD>`` variables (``MINIVESS_OVERLAP=0.5``,
``MINIVESS_PROVIDERS=CUDAExecutionProvider,CPUExecutionProvider``; ``selection_rules``
takes JSON). Every name is listed in ``settings/REFERENCE.md``.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, field_validator
from pydantic_settings import NoDecode

from models.inference import SlidingWindowSettings
from settings.base import MinivessSettings, load

UncertaintyQuantity = Literal["mutual_information", "predictive_entropy", "expected_entropy"]


class AppConfig(MinivessSettings):
    """The MAP pipeline (``python -m map_app``, and inside the service): series selection,
    sliding window, runtime, outputs."""

    component = "map_app"
    config_file_env = "MINIVESS_CONFIG"

    selection_rules: dict | None = Field(
        default=None,
        description="series selection rules in the MONAI Deploy SDK JSON format; "
        "None = the default rules (axial CT/MR image volumes, no localizers/derived)",
    )
    overlap: float = Field(default=0.25, ge=0.0, lt=1.0, description="sliding-window overlap")
    batch_size: int = Field(default=2, ge=1, description="windows per inference call")
    test_time_flips: bool = Field(default=False, description="average over flipped inputs")
    window_screen: bool = Field(
        default=True,
        description="skip sliding windows that cannot hold a lumen (CT: no voxel >= 100 HU, "
        "MR: none >= 1.5x the tissue, after a one-voxel smoothing; models/screen.py); "
        "benchmarks/screen_check.py measures that it changes no test or shift-suite answer",
    )
    fusion: Literal["mean", "majority", "weighted"] | None = Field(
        default=None, description="None = the manifest's fusion"
    )
    # NoDecode: the variable is a comma-separated list, not JSON.
    providers: Annotated[tuple[str, ...] | None, NoDecode] = Field(
        default=None,
        description="ONNX Runtime execution providers, comma-separated; None = best available",
    )
    threads: int | None = Field(default=None, ge=1, description="intra-op threads per session")
    bf16: bool = Field(
        default=True,
        description="let OpenVINO run in bfloat16 where the CPU has bf16 instructions; the "
        "ensemble Dice on the locked test split stays within 0.005 of fp32 (a test checks)",
    )
    memory_budget_mb: int = Field(
        default=4096, ge=16, description="largest input volume accepted (float32 voxels)"
    )
    fractional_seg: bool = Field(default=False, description="also write a probability SEG")
    uncertainty_map: UncertaintyQuantity = Field(
        default="mutual_information", description="the voxel quantity of the uncertainty map"
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field(
        default="WARNING", description="Python logging level of the map_app command"
    )

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def sliding_window(self) -> SlidingWindowSettings:
        flips = ((0,), (1,), (2,)) if self.test_time_flips else ()
        return SlidingWindowSettings(
            overlap=self.overlap,
            batch_size=self.batch_size,
            flips=flips,
            screen=self.window_screen,
        )


def load_config(path: Path | None = None, environ: Mapping[str, str] | None = None) -> AppConfig:
    """Defaults, the JSON file, secret files, then ``MINIVESS_*`` variables."""
    return load(AppConfig, path, environ)
