"""One way to read a settings model: defaults, a config file, secret files, the environment.

Every component (the service, the MAP, the audit tools, release signing, the image build,
``airgap/deploy.sh``) describes its settings as a :class:`MinivessSettings` model, and
:func:`load` fills it from these sources, lowest precedence first:

1. the model's defaults;
2. a config file (JSON, or TOML when the name ends in ``.toml``), named by the caller or
   by the model's ``config_file_env`` variable;
3. secret files: a folder named by ``MINIVESS_SECRETS_DIR`` with one file per setting,
   named like its variable (``MINIVESS_API_TOKEN``): how Kubernetes mounts a Secret;
4. environment variables ``MINIVESS_<FIELD>``; list, dict and model fields take JSON;
5. keyword overrides from the caller (command-line options, tests).

pydantic-settings does the reading; this module only fixes the order and makes every
failure a :class:`SettingsError`, which the command-line tools turn into exit code 78
(``EX_CONFIG`` of sysexits.h: "configuration error").
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar, TypeVar

from pydantic import ValidationError
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    InitSettingsSource,
    JsonConfigSettingsSource,
    PydanticBaseSettingsSource,
    SecretsSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from pydantic_settings.sources import DefaultSettingsSource
from pydantic_settings.sources.utils import parse_env_vars

ENV_PREFIX = "MINIVESS_"
SECRETS_DIR_ENV = "MINIVESS_SECRETS_DIR"
# sysexits.h EX_CONFIG: every command-line tool exits with it on a settings error.
EXIT_CONFIG = 78


class SettingsError(ValueError):
    """A setting is missing, malformed, unknown or inconsistent (exit code 78)."""


class MinivessSettings(BaseSettings):
    """Base of every settings model: ``MINIVESS_`` variables, unknown keys refused."""

    model_config = SettingsConfigDict(
        env_prefix=ENV_PREFIX, extra="forbid", frozen=True, env_ignore_empty=False
    )

    # Who reads these settings, for the generated reference.
    component: ClassVar[str] = ""
    # The variable naming this model's config file, if it has one.
    config_file_env: ClassVar[str | None] = None

    @classmethod
    def env_name(cls, field: str) -> str:
        """The environment variable (and secret file name) of one field."""
        return ENV_PREFIX + field.upper()

    @classmethod
    def env_names(cls) -> list[str]:
        """Every variable this model reads, its config-file variable included."""
        names = [cls.env_name(field) for field in cls.model_fields]
        return names + ([cls.config_file_env] if cls.config_file_env else [])


class _EnvironSource(EnvSettingsSource):
    """The environment source, reading a given mapping instead of ``os.environ``."""

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        self._environ = environ
        super().__init__(settings_cls)

    def _load_env_vars(self) -> Mapping[str, str | None]:
        return parse_env_vars(
            self._environ, self.case_sensitive, self.env_ignore_empty, self.env_parse_none_str
        )


def _file_source(model: type[BaseSettings], path: Path) -> PydanticBaseSettingsSource:
    if not path.is_file():
        raise SettingsError(f"cannot read config file {path}: no such file")
    if path.suffix == ".toml":
        return TomlConfigSettingsSource(model, toml_file=path)
    return JsonConfigSettingsSource(model, json_file=path)


def _problems(model: type[MinivessSettings], error: ValidationError) -> str:
    """One line per problem, naming the variable a site would set."""

    def where(loc: tuple[str | int, ...]) -> str:
        if not loc:
            return "settings"
        path = ".".join(str(part) for part in loc)
        field = str(loc[0])
        return f"{model.env_name(field)} ({path})" if field in model.model_fields else path

    return "; ".join(f"{where(e['loc'])}: {e['msg']}" for e in error.errors())


Model = TypeVar("Model", bound=MinivessSettings)


def load(
    model: type[Model],
    config_file: Path | None = None,
    environ: Mapping[str, str] | None = None,
    **overrides: Any,
) -> Model:
    """Read ``model`` from its sources (see the module docstring), or raise SettingsError.

    ``environ`` defaults to the process environment; tests pass their own.
    """
    environ = os.environ if environ is None else environ
    if config_file is None and model.config_file_env and environ.get(model.config_file_env):
        config_file = Path(environ[model.config_file_env])
    secrets_dir = environ.get(SECRETS_DIR_ENV)
    if secrets_dir and not Path(secrets_dir).is_dir():
        raise SettingsError(f"{SECRETS_DIR_ENV} is not a folder: {secrets_dir}")
    try:
        # Highest precedence first, as pydantic-settings expects; defaults last.
        sources: list[PydanticBaseSettingsSource] = [
            InitSettingsSource(model, overrides),
            _EnvironSource(model, environ),
        ]
        if secrets_dir:
            sources.append(SecretsSettingsSource(model, secrets_dir=secrets_dir))
        if config_file is not None:
            sources.append(_file_source(model, config_file))
        sources.append(DefaultSettingsSource(model))
        return model(_build_sources=(tuple(sources), {}))
    except ValidationError as error:
        raise SettingsError(f"invalid {model.component} settings: "
                            f"{_problems(model, error)}") from error  # fmt: skip
    except SettingsError:
        raise
    except ValueError as error:  # a config file, or a variable that must be JSON and is not
        field = re.search(r'field "(\w+)"', str(error))
        what = f"{model.env_name(field[1])} must be JSON" if field else "a value does not parse"
        cause = f" ({error.__cause__})" if error.__cause__ else ""
        raise SettingsError(f"cannot read {model.component} settings: {what}: "
                            f"{error}{cause}") from error  # fmt: skip
