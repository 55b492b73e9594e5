"""The ClusterSet's member clusters and their properties, as ``clusterset.yaml`` and the run config give them.

Pure data, validated with pydantic: the failover semantics read it, the providers and the run config
load it. Every error names the field path.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel


class ConfigError(ValueError):
    """A configuration file that cannot be used; the message names the file and the field."""


class ConfigModel(BaseModel):
    """camelCase keys in files, snake_case in Python; immutable; unknown keys are errors (typos are caught)."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, frozen=True, extra="forbid")


class ClusterProperties(ConfigModel):
    """One member cluster: its ID (``name``), where it runs, which clusters it prefers to fail over to, and
    labels a FailoverPolicy's level or exclusion can select it by."""

    name: str = Field(pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$", max_length=63)
    region: str = ""
    zone: str = ""
    failover_order: tuple[str, ...] = ()
    labels: dict[str, str] = Field(default_factory=dict)


def check_cluster_names(clusters: Iterable[ClusterProperties]) -> None:
    """Cluster names are unique and every failoverOrder entry names one of them (ValueError if not)."""
    items = list(clusters)
    names = [c.name for c in items]
    if duplicates := sorted({n for n in names if names.count(n) > 1}):
        raise ValueError(f"cluster names must be unique: {', '.join(duplicates)}")
    for cluster in items:
        if unknown := [n for n in cluster.failover_order if n not in names]:
            raise ValueError(f"cluster {cluster.name}: failoverOrder names unknown clusters {', '.join(unknown)}")


class ClusterSetProperties(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    clusters: tuple[ClusterProperties, ...]

    @field_validator("clusters")
    @classmethod
    def _names_are_unique_and_known(cls, clusters: tuple[ClusterProperties, ...]) -> tuple[ClusterProperties, ...]:
        check_cluster_names(clusters)
        return clusters


def validation_problems(error: ValidationError) -> str:
    """A pydantic error as ``field.path: message; ...``, for messages that say what to change."""
    def message(issue: Any) -> str:
        text = str(issue["msg"])
        return text.removeprefix("Value error, ")

    return "; ".join(f"{'.'.join(str(p) for p in issue['loc']) or '<file>'}: {message(issue)}"
                     for issue in error.errors())
