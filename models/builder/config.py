"""What the builder trains: the ensemble members and their training settings.

``SHIPPED`` is the recipe of the committed ensemble; ``SMOKE`` is a seconds-long run of the
same code path for CI. Both are pydantic models so a recipe can be read from JSON too.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from models.manifest import Normalisation


class MemberRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")
    architecture: Literal["UNet", "SegResNet"]
    architecture_params: dict[str, int | float | str | list[int]]
    seed: int
    input_spacing_mm: tuple[float, float, float]
    patch_size: tuple[int, int, int]
    iterations: int = Field(ge=1)
    batch_size: int = Field(default=2, ge=1)
    learning_rate: float = Field(default=2e-3, gt=0.0)
    foreground_fraction: float = Field(default=0.7, ge=0.0, le=1.0)
    normalisation: Normalisation = Normalisation()


class BuildRecipe(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    ensemble_name: str = "minivess-vessel-ensemble"
    version: str = "1.0.0"
    members: tuple[MemberRecipe, ...]
    train_seeds: tuple[int, int] = (0, 16)
    val_seeds: tuple[int, int] = (1000, 1012)
    test_seeds: tuple[int, int] = (2000, 2006)
    torch_threads: int = 2
    onnx_opset: int = 17
    parity_tolerance: float = 1e-4


SHIPPED = BuildRecipe(
    members=(
        MemberRecipe(
            name="unet-a",
            architecture="UNet",
            architecture_params={
                "channels": [16, 32, 64, 128],
                "strides": [2, 2, 2],
                "num_res_units": 1,
            },
            seed=11,
            input_spacing_mm=(0.6, 0.6, 0.6),
            patch_size=(48, 48, 48),
            iterations=1200,
        ),
        MemberRecipe(
            name="segresnet-b",
            architecture="SegResNet",
            architecture_params={"init_filters": 8, "blocks_down": [1, 2, 2], "blocks_up": [1, 1]},
            seed=23,
            input_spacing_mm=(0.6, 0.6, 0.6),
            patch_size=(48, 48, 48),
            iterations=700,
        ),
        MemberRecipe(
            name="unet-c",
            architecture="UNet",
            architecture_params={
                "channels": [8, 16, 32, 64],
                "strides": [2, 2, 2],
                "num_res_units": 2,
            },
            seed=37,
            input_spacing_mm=(0.5, 0.5, 0.5),
            patch_size=(48, 48, 48),
            iterations=1200,
        ),
    ),
)

SMOKE = BuildRecipe(
    ensemble_name="minivess-smoke",
    version="0.0.1",
    members=(
        MemberRecipe(
            name="unet-smoke",
            architecture="UNet",
            architecture_params={"channels": [4, 8, 16], "strides": [2, 2], "num_res_units": 1},
            seed=1,
            input_spacing_mm=(1.0, 1.0, 1.0),
            patch_size=(24, 24, 24),
            iterations=3,
        ),
        MemberRecipe(
            name="segresnet-smoke",
            architecture="SegResNet",
            architecture_params={"init_filters": 8, "blocks_down": [1, 1], "blocks_up": [1]},
            seed=2,
            input_spacing_mm=(1.0, 1.0, 1.0),
            patch_size=(24, 24, 24),
            iterations=3,
        ),
    ),
    train_seeds=(0, 2),
    val_seeds=(1000, 1001),
    test_seeds=(2000, 2001),
)
