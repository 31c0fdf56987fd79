"""Ensure a MinIO user that can only read the bucket: what model-server pods get (serving.s3SecretName).

Usage: minio_readonly.py ENDPOINT_URL BUCKET CREDENTIALS_FILE
  The admin (root) credentials come from AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY in the environment, the
  read-only user's from CREDENTIALS_FILE (S3_READONLY_ACCESS_KEY_ID=..., S3_READONLY_SECRET_ACCESS_KEY=...).
Idempotent: creates the policy, the user and the attachment only when missing and says what it added.
Secrets never reach argv or the output. Runs with the `minio` package (MinIO's admin API: user creation
is encrypted with the admin secret, which is why plain S3 tooling cannot do it).
"""

from __future__ import annotations

import json
import os
import sys
from urllib.parse import urlparse

from minio import MinioAdmin
from minio.credentials import StaticProvider

POLICY = "mlops-readonly"


def policy_for(bucket: str) -> dict:
    """Read objects and list the bucket (so a missing key is NoSuchKey, not AccessDenied); nothing else."""
    return {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Action": ["s3:GetBucketLocation", "s3:ListBucket"], "Resource": [f"arn:aws:s3:::{bucket}"]},
        {"Effect": "Allow", "Action": ["s3:GetObject"], "Resource": [f"arn:aws:s3:::{bucket}/*"]},
    ]}


def read_credentials(path: str) -> tuple[str, str]:
    values = dict(line.strip().split("=", 1) for line in open(path, encoding="utf-8") if "=" in line)
    return values["S3_READONLY_ACCESS_KEY_ID"], values["S3_READONLY_SECRET_ACCESS_KEY"]


def policies_of(info: dict) -> set[str]:
    return {p for p in (info.get("policyName") or "").split(",") if p}


def main(endpoint_url: str, bucket: str, credentials_file: str) -> int:
    url = urlparse(endpoint_url)
    admin = MinioAdmin(endpoint=url.netloc, secure=url.scheme == "https", credentials=StaticProvider(
        os.environ["AWS_ACCESS_KEY_ID"], os.environ["AWS_SECRET_ACCESS_KEY"]))
    access_key, secret_key = read_credentials(credentials_file)
    added = []
    want = policy_for(bucket)
    try:
        have = json.loads(admin.policy_info(POLICY))
    except Exception:  # noqa: BLE001 (the admin client raises a bare MinioAdminException for "no such policy")
        have = None
    if have is None or have.get("Statement") != want["Statement"]:
        admin.policy_add(POLICY, policy=want)
        added.append(f"policy {POLICY}")
    try:
        info = json.loads(admin.user_info(access_key))
    except Exception:  # noqa: BLE001 (no such user)
        admin.user_add(access_key, secret_key)
        added.append("user")
        info = json.loads(admin.user_info(access_key))
    if POLICY not in policies_of(info):
        admin.attach_policy([POLICY], user=access_key)
        added.append(f"attachment of {POLICY}")
    print(f"minio read-only user: {'added ' + ', '.join(added) if added else 'already in place'}")
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    sys.exit(main(*sys.argv[1:]))
