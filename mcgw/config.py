"""ClusterSet configuration: the member clusters and their properties (validated; errors name the field)."""

from __future__ import annotations

from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic.alias_generators import to_camel


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the field."""


class ClusterProperties(BaseModel):
    """One member cluster: its ID (``name``), where it runs, and which clusters it prefers to fail over to."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    region: str = ""
    zone: str = ""
    failover_order: tuple[str, ...] = ()


class ClusterSetProperties(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clusters: tuple[ClusterProperties, ...]

    @model_validator(mode="after")
    def _names_are_unique_and_known(self) -> ClusterSetProperties:
        names = [c.name for c in self.clusters]
        if duplicates := sorted({n for n in names if names.count(n) > 1}):
            raise ValueError(f"cluster names must be unique: {', '.join(duplicates)}")
        for cluster in self.clusters:
            if unknown := [n for n in cluster.failover_order if n not in names]:
                raise ValueError(f"cluster {cluster.name}: failoverOrder names unknown clusters {', '.join(unknown)}")
        return self


def load_clusterset(path: Path) -> ClusterSetProperties:
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as error:
        raise ConfigError(f"{path}: {error}") from None
    try:
        return ClusterSetProperties.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(f"{'.'.join(str(p) for p in issue['loc']) or '<file>'}: {issue['msg']}"
                             for issue in error.errors())
        raise ConfigError(f"{path}: {problems}") from None
