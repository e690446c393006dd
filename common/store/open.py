"""The artifact store the settings describe."""

from __future__ import annotations

from common.settings import Settings
from common.store.base import ArtifactStore

__all__ = ["make_store"]


def make_store(settings: Settings) -> ArtifactStore:
    """The store the settings describe: the bucket when one is named, else the data directory."""
    if settings.s3_bucket:
        secret = settings.s3_secret_access_key
        from common.store.s3 import S3Store  # boto3 only where a bucket is used

        return S3Store(
            settings.s3_bucket,
            prefix=settings.s3_prefix,
            endpoint_url=settings.s3_endpoint_url,
            region=settings.s3_region,
            access_key_id=settings.s3_access_key_id,
            secret_access_key=secret.get_secret_value() if secret is not None else None,
        )
    from common.store.local import LocalStore

    return LocalStore(settings.data_dir)
