"""The settings reference (``settings/REFERENCE.md``), generated from the models.

``python -m settings reference --write`` regenerates it; a test fails when the committed
file differs from what the models give, so the page cannot go stale.
"""

from __future__ import annotations

import json
import re
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, SecretStr
from pydantic.fields import FieldInfo
from pydantic_core import PydanticUndefined

from settings.base import SECRETS_DIR_ENV, MinivessSettings
from settings.registry import MODELS, OTHER_NAMES

REFERENCE = Path(__file__).with_name("REFERENCE.md")

_HEADER = f"""# Settings reference

Generated from the settings models by `python -m settings reference --write`; do not edit
by hand (`tests/test_settings_contract.py` fails when this page and the models differ).

Every component reads its settings the same way (`settings/base.py`), lowest precedence
first: the defaults below; a config file (JSON, or TOML for the service when the name ends
in `.toml`) named by the component's config-file variable or `--config`; secret files in
the folder named by `{SECRETS_DIR_ENV}`, one file per setting named like its variable (how
Kubernetes mounts a Secret); environment variables; command-line options. List, object
and model values take JSON in variables and secret files. A `MINIVESS_*` variable that no
component reads is refused at start with the nearest valid name, and every settings error
exits with code 78 (EX_CONFIG) before anything starts.
"""


def _type_name(annotation: Any) -> str:
    text = str(annotation) if not isinstance(annotation, type) else annotation.__name__
    text = re.sub(r"\b(?:[a-z_]+\.)+([A-Za-z_]+)", r"\1", text)  # pathlib.Path -> Path
    return text.replace("typing.", "").replace("NoneType", "None")


def _default(field: FieldInfo) -> str:
    if field.default_factory is not None:
        value = field.default_factory()  # type: ignore[call-arg]
    elif field.default is PydanticUndefined:
        return "(required)"
    else:
        value = field.default
    if value is None:
        return "unset"
    if isinstance(value, SecretStr):
        return "(secret)"
    if isinstance(value, Enum):
        value = value.value
    if isinstance(value, BaseModel):
        value = value.model_dump(mode="json")
    if isinstance(value, Path | str):
        return f"`{value}`" if str(value) else '`""`'
    return f"`{json.dumps(value, default=str)}`"


def _cell(text: str) -> str:
    return " ".join(text.split()).replace("|", "\\|")


def _model_section(model: type[MinivessSettings]) -> list[str]:
    doc = (model.__doc__ or "").strip().split("\n\n")[0]
    lines = [f"## {model.component}", "", _cell(doc), ""]
    if model.config_file_env:
        lines += [f"Config file: `{model.config_file_env}`.", ""]
    lines += ["| variable | type | default | description |", "| --- | --- | --- | --- |"]
    for name, field in model.model_fields.items():
        lines.append(
            f"| `{model.env_name(name)}` | {_cell(f'`{_type_name(field.annotation)}`')} | "
            f"{_default(field)} | {_cell(field.description or '')} |"
        )
    return [*lines, ""]


def render() -> str:
    lines = [_HEADER]
    for model in MODELS:
        lines += _model_section(model)
    lines += ["## Other variables", "", "| variable | what it is |", "| --- | --- |"]
    lines += [f"| `{name}` | {_cell(text)} |" for name, text in sorted(OTHER_NAMES.items())]
    return "\n".join(lines) + "\n"
