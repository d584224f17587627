"""The MLflow parameters of a build: the recipe flattened, the data versions, the code."""

from __future__ import annotations

from models.builder.config import BuildRecipe
from models.builder.site import SitePlan
from models.manifest import DatasetVersion
from synthetic.case import GENERATOR_VERSION


def build_params(
    recipe: BuildRecipe,
    datasets: list[DatasetVersion],
    code_commit: str,
    plan: SitePlan | None,
) -> dict[str, object]:
    """The run's MLflow parameters: the recipe flattened, the data versions, the code."""
    params: dict[str, object] = {"code_commit": code_commit, "generator_version": GENERATOR_VERSION}
    for key, value in recipe.model_dump(mode="json", exclude={"members", "site"}).items():
        params[f"recipe.{key}"] = value
    for member in recipe.members:
        for key, value in member.model_dump(mode="json").items():
            params[f"member.{member.name}.{key}"] = value
    for version in datasets:
        params[f"data.{version.role}.sha256"] = version.content_sha256
        params[f"data.{version.role}.cases"] = version.cases
    if recipe.site is not None and plan is not None:
        for key, value in recipe.site.model_dump(mode="json").items():
            params[f"site.{key}"] = value
        params["site.synthetic_share_achieved"] = round(plan.achieved_share, 4)
        params["site.format_read"] = plan.dataset.format
        for name, digest in plan.fine_tuned_from.items():
            params[f"member.{name}.fine_tuned_from_sha256"] = digest
    return params
