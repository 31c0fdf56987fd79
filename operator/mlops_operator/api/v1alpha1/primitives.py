"""Constrained value types shared by the kinds: names, durations, s3:// URIs, quantities, cron, data sources.

Each type carries its constraint both ways: a pattern/length the apiserver enforces from the CRD, and
the same check in Python (pydantic), so the operator never trusts what the apiserver did not check.
"""

from __future__ import annotations

import re
from datetime import timedelta
from enum import StrEnum
from typing import Annotated, Any

from croniter import croniter
from pydantic import AfterValidator, Field

from mlops_operator.api.v1alpha1.common import ApiModel, CelRule, cel_validations

# ------------------------------------------------------------------------------------------------ names

DNS_LABEL_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN_PATTERN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# A model key: label value (mlops.dev/model), S3 path segment and served model name, so a DNS label.
ModelName = Annotated[str, Field(pattern=DNS_LABEL_PATTERN, min_length=1, max_length=63)]
# The name of another object in the same namespace.
ObjectName = Annotated[str, Field(pattern=DNS_SUBDOMAIN_PATTERN, min_length=1, max_length=253)]
# A column of a dataset (sklearn's builtin datasets have names like "mean radius").
ColumnName = Annotated[str, Field(min_length=1, max_length=128)]

# ------------------------------------------------------------------------------------------- durations

DURATION_PATTERN = r"^([0-9]{1,6}h)?([0-9]{1,6}m)?([0-9]{1,6}s)?$"
_DURATION_RE = re.compile(r"^(?:(?P<h>[0-9]{1,6})h)?(?:(?P<m>[0-9]{1,6})m)?(?:(?P<s>[0-9]{1,6})s)?$")


def parse_duration(value: str) -> timedelta:
    """Parse ``30s``, ``5m``, ``1h``, ``1h30m`` (hours, minutes, seconds in that order) into a timedelta.

    >>> parse_duration("1h30m")
    datetime.timedelta(seconds=5400)
    """
    match = _DURATION_RE.match(value or "")
    if not value or match is None:
        raise ValueError(f"invalid duration {value!r}: use e.g. 30s, 5m, 1h or 1h30m")
    parts = {k: int(v) for k, v in match.groupdict(default="0").items()}
    return timedelta(hours=parts["h"], minutes=parts["m"], seconds=parts["s"])


def _valid_duration(value: str) -> str:
    parse_duration(value)
    return value


# The pattern alone also matches ""; minLength 2 ("5s") excludes it.
Duration = Annotated[
    str, Field(pattern=DURATION_PATTERN, min_length=2, max_length=24), AfterValidator(_valid_duration)
]

# ---------------------------------------------------------------------------------------------- s3 URIs

S3_URI_PATTERN = r"^s3://[a-z0-9][a-z0-9.-]{1,61}[a-z0-9](/[^/\s\\]+)*/?$"
S3_URI_MAX_LENGTH = 1024
_DOT_SEGMENT = "/[.][.]?(/|$)"
S3_NO_DOT_SEGMENTS = CelRule(
    rule=f"!self.matches('{_DOT_SEGMENT}')",
    message="uri must not contain '.' or '..' path segments",
)


def _no_dot_segments(value: str) -> str:
    if re.search(_DOT_SEGMENT, value):
        raise ValueError(S3_NO_DOT_SEGMENTS.message)
    return value


S3Uri = Annotated[
    str,
    Field(pattern=S3_URI_PATTERN, max_length=S3_URI_MAX_LENGTH,
          json_schema_extra=cel_validations(S3_NO_DOT_SEGMENTS)),
    AfterValidator(_no_dot_segments),
]

# ------------------------------------------------------------------------------------------------- misc

SHA256_PATTERN = r"^[a-f0-9]{64}$"
Sha256 = Annotated[str, Field(pattern=SHA256_PATTERN, min_length=64, max_length=64)]

CRON_PATTERN = r"^(@(yearly|annually|monthly|weekly|daily|midnight|hourly)|(\S+\s+){4}\S+)$"


def _valid_cron(value: str) -> str:
    if not croniter.is_valid(value):
        raise ValueError(f"invalid cron schedule {value!r}")
    return value


Cron = Annotated[str, Field(pattern=CRON_PATTERN, max_length=128), AfterValidator(_valid_cron)]

QUANTITY_PATTERN = (
    r"^(\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))(([KMGTPE]i)|[numkMGTPE]|([eE](\+|-)?(([0-9]+(\.[0-9]*)?)|(\.[0-9]+))))?$"
)


def _valid_quantity(value: int | str) -> int | str:
    if isinstance(value, str) and not re.match(QUANTITY_PATTERN, value):
        raise ValueError(f"invalid quantity {value!r} (e.g. 500m, 1, 2Gi)")
    return value


# A resource.Quantity: int-or-string in the CRD (the pattern applies to the string form).
Quantity = Annotated[
    int | str,
    AfterValidator(_valid_quantity),
    Field(json_schema_extra={"x-kubernetes-int-or-string": True, "pattern": QUANTITY_PATTERN}),
]

RESOURCE_NAME_PATTERN = r"^([a-z0-9.-]+/)?[a-z0-9]([-a-z0-9._]*[a-z0-9])?$"


class ResourceRequirements(ApiModel):
    """CPU/memory requests and limits, as in a container spec."""

    requests: dict[str, Quantity] | None = Field(
        None, max_length=8, description="Minimum resources, e.g. {cpu: 500m, memory: 1Gi}."
    )
    limits: dict[str, Quantity] | None = Field(
        None, max_length=8, description="Maximum resources, e.g. {cpu: '2', memory: 2Gi}."
    )


# ------------------------------------------------------------------------------------------ data sources


class FileFormat(StrEnum):
    PARQUET = "parquet"
    CSV = "csv"


class BuiltinDataset(StrEnum):
    """Datasets shipped inside scikit-learn (no download): the quick path and the tests' data."""

    BREAST_CANCER = "breast_cancer"
    IRIS = "iris"
    WINE = "wine"
    DIABETES = "diabetes"
    DIGITS = "digits"


def _has(obj: Any, name: str) -> bool:
    return getattr(obj, name) is not None


class DataSource(ApiModel):
    """Where rows come from: an s3:// object or a builtin scikit-learn dataset (exactly one)."""

    uri: S3Uri | None = Field(None, description="s3:// URI of a parquet or csv file.")
    format: FileFormat | None = Field(
        None, description="File format of uri: parquet or csv; from the file extension when absent."
    )
    builtin: BuiltinDataset | None = Field(
        None, description="A dataset shipped with scikit-learn: breast_cancer, iris, wine, diabetes or digits."
    )

    cel_rules = (
        CelRule("has(self.uri) != has(self.builtin)", "exactly one of uri or builtin must be set",
                lambda s: _has(s, "uri") != _has(s, "builtin")),
        CelRule("!has(self.format) || has(self.uri)", "format applies only with uri",
                lambda s: not _has(s, "format") or _has(s, "uri"), field_path=".format"),
    )


# Any JSON value (a number, string, bool...): x-kubernetes-preserve-unknown-fields with no type.
AnyValue = Annotated[Any, Field(json_schema_extra={"x-kubernetes-preserve-unknown-fields": True})]
