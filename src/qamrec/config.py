"""One typed configuration object for the whole package.

Values come, in rising priority, from the defaults below, ``QAMREC_*`` environment variables
(``QAMREC_HOME``; nested fields as ``QAMREC_DATA__SOURCE``) and ``--set key=value`` overrides on the
command line (``--set data.synth_seed=7``). Paths are relative to the working directory or ``~``-expanded;
nothing in the code is absolute.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from qamrec.errors import QamrecError

__all__ = ["DataConfig", "Config", "load_config"]


class DataConfig(BaseModel):
    """Where data comes from and how it is prepared."""

    model_config = ConfigDict(extra="forbid")

    source: Path | None = Field(
        default=None, description="local folder laid out like shared/data, used instead of the internet"
    )
    verify: bool = Field(default=True, description="check SHA256 digests of fetched files")
    title_match_threshold: float = Field(
        default=0.92, ge=0.0, le=1.0, description="min. normalized-title similarity for a fuzzy catalog link"
    )


class Config(BaseSettings):
    """The resolved configuration of a run."""

    model_config = SettingsConfigDict(env_prefix="QAMREC_", env_nested_delimiter="__", extra="forbid")

    home: Path = Field(default=Path("~/.cache/qamrec"), description="data home: fetched, prepared, runs")
    seed: int = 0
    data: DataConfig = Field(default_factory=DataConfig)

    @field_validator("home")
    @classmethod
    def _expand(cls, v: Path) -> Path:
        return v.expanduser()

    @property
    def raw_dir(self) -> Path:
        """Fetched source files, laid out like shared/data."""
        return self.home / "raw"

    @property
    def prepared_dir(self) -> Path:
        """Typed tables (Parquet) made by ``data prepare``."""
        return self.home / "prepared"

    def with_overrides(self, overrides: list[str]) -> Config:
        """Return a copy with ``key=value`` overrides applied (dotted keys for nested fields)."""
        data: dict[str, Any] = self.model_dump()
        for item in overrides:
            if "=" not in item:
                raise QamrecError(f"--set {item!r}: expected key=value, e.g. --set data.verify=false")
            key, value = item.split("=", 1)
            node = data
            parts = key.strip().split(".")
            for p in parts[:-1]:
                if not isinstance(node.get(p), dict):
                    raise QamrecError(f"--set {item!r}: unknown config section '{p}'")
                node = node[p]
            if parts[-1] not in node:
                raise QamrecError(f"--set {item!r}: unknown config key '{key}' (known: {sorted(node)})")
            node[parts[-1]] = None if value.lower() in {"none", "null"} else value
        try:
            return Config.model_validate(data)
        except ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(x) for x in err["loc"])
            raise QamrecError(f"--set {loc}: {err['msg']}") from None


def load_config(overrides: list[str] | None = None, **fields: Any) -> Config:
    """Defaults + environment, then explicit fields, then ``key=value`` overrides."""
    try:
        cfg = Config(**{k: v for k, v in fields.items() if v is not None})
    except ValidationError as e:
        err = e.errors()[0]
        raise QamrecError(f"config {'.'.join(str(x) for x in err['loc'])}: {err['msg']}") from None
    return cfg.with_overrides(overrides or [])
