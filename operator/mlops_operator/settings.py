"""Configuration from the environment, loaded once. Shared by the operator and the runtime entrypoints."""

from __future__ import annotations

from functools import lru_cache

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict


class S3Settings(BaseSettings):
    """Where artifacts and feature snapshots live (MinIO in development)."""

    model_config = SettingsConfigDict(env_prefix="", extra="ignore")

    s3_endpoint_url: str | None = Field(None, description="S3 endpoint, e.g. http://127.0.0.1:9000; None = AWS.")
    s3_bucket: str = Field("mlops", description="Default bucket for models/ and features/.")
    aws_access_key_id: SecretStr | None = None
    aws_secret_access_key: SecretStr | None = None
    aws_region: str = Field("us-east-1", alias="AWS_REGION")


@lru_cache(maxsize=1)
def s3_settings() -> S3Settings:
    return S3Settings()
