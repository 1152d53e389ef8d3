"""The one boto3 S3 client of the library: for plain S3 (fetch's `s3://` sources) and for lakeFS's
S3 gateway (fetch's `lakefs://` sources, `ul release`).

Checksums are computed and validated only when required: boto3 >= 1.36 otherwise sends CRC headers
that S3-compatible gateways (lakeFS, older MinIO) reject. With an explicit endpoint, buckets are
addressed by path (`http://host/bucket/key`), which gateways and MinIO serve without DNS tricks.
"""

from __future__ import annotations

import os


def client(endpoint: str | None = None, access_key: str | None = None, secret_key: str | None = None):
    """An S3 client at `endpoint` (None: AWS) with these keys (None: boto3's default chain)."""
    import boto3  # lazy: slow to import, and only sources on S3 or lakeFS need it
    from botocore.config import Config

    config = Config(
        request_checksum_calculation="when_required",
        response_checksum_validation="when_required",
        retries={"max_attempts": 3, "mode": "standard"},
        connect_timeout=5,
        read_timeout=120,
        s3={"addressing_style": "path"} if endpoint else {},
    )
    return boto3.client(
        "s3",
        endpoint_url=endpoint,
        aws_access_key_id=access_key,
        aws_secret_access_key=secret_key,
        config=config,
        region_name=os.environ.get("AWS_DEFAULT_REGION", "us-east-1"),
    )
