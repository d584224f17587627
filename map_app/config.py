"""The application's settings: one pydantic model, from defaults, a JSON file and env vars.

Precedence (lowest to highest): defaults, the file named by ``--config`` or
``MINIVESS_CONFIG`` (JSON), environment variables ``MINIVESS_<FIELD>`` for the scalar
fields (e.g. ``MINIVESS_OVERLAP=0.5``, ``MINIVESS_PROVIDERS=CUDAExecutionProvider``).
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from models.inference import SlidingWindowSettings

UncertaintyQuantity = Literal["mutual_information", "predictive_entropy", "expected_entropy"]


class ConfigError(ValueError):
    """The configuration file or an environment override is invalid (exit code 2)."""


class AppConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    selection_rules: dict | None = Field(
        default=None,
        description="series selection rules in the MONAI Deploy SDK JSON format; "
        "None = the default rules (axial CT/MR image volumes, no localizers/derived)",
    )
    overlap: float = Field(default=0.25, ge=0.0, lt=1.0, description="sliding-window overlap")
    batch_size: int = Field(default=2, ge=1, description="windows per inference call")
    test_time_flips: bool = Field(default=False, description="average over flipped inputs")
    fusion: Literal["mean", "majority", "weighted"] | None = Field(
        default=None, description="None = the manifest's fusion"
    )
    providers: tuple[str, ...] | None = Field(
        default=None, description="ONNX Runtime execution providers; None = best available"
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
    uncertainty_map: UncertaintyQuantity = "mutual_information"

    @field_validator("providers", mode="before")
    @classmethod
    def _split_providers(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    def sliding_window(self) -> SlidingWindowSettings:
        flips = ((0,), (1,), (2,)) if self.test_time_flips else ()
        return SlidingWindowSettings(overlap=self.overlap, batch_size=self.batch_size, flips=flips)


_ENV_PREFIX = "MINIVESS_"


def load_config(path: Path | None = None, environ: dict[str, str] | None = None) -> AppConfig:
    """Defaults, then the JSON file, then ``MINIVESS_*`` environment overrides."""
    environ = dict(os.environ if environ is None else environ)
    values: dict = {}
    path = path or (Path(environ["MINIVESS_CONFIG"]) if environ.get("MINIVESS_CONFIG") else None)
    if path is not None:
        try:
            values.update(json.loads(path.read_text()))
        except FileNotFoundError as error:
            raise ConfigError(f"configuration file not found: {path}") from error
        except json.JSONDecodeError as error:
            raise ConfigError(f"configuration file {path} is not valid JSON: {error}") from error
    for name in AppConfig.model_fields:
        raw = environ.get(_ENV_PREFIX + name.upper())
        if raw is not None and name != "selection_rules":
            values[name] = raw
    try:
        return AppConfig.model_validate(values)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise ConfigError(f"invalid configuration: {problems}") from error
