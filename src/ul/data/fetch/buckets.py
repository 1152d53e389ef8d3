"""The objects under an S3 prefix, listed and streamed: plain S3 or lakeFS's S3 gateway.

lakeFS is reached through its S3 gateway (bucket = repository, key = `<ref>/<path>`), so one
client (`ul.storage.s3`) serves both; only the endpoint and credentials come from different
variables (for lakeFS, the rule in `ul.storage`). Credentials are read from the environment and
never appear in messages.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass

from ul.common.errors import redact_urls
from ul.data.fetch.stream import Stream
from ul.data.fetch.tree import ListedTree
from ul.data.layout import DataError, bad_name
from ul.storage import StorageError, s3
from ul.storage.lakefs import LakeFSPath, gateway_settings


@dataclass(frozen=True)
class Bucket:
    """Where to list: `bucket` + `prefix` at `endpoint`, with explicit keys or boto3's default chain."""

    url: str  # as the user wrote it, for messages
    bucket: str
    prefix: str
    endpoint: str | None
    access_key: str | None = None
    secret_key: str | None = None


def _as_prefix(path: str) -> str:
    path = path.strip("/")
    return f"{path}/" if path else ""


def s3_location(url: str) -> Bucket:
    """`s3://bucket/prefix`; endpoint from AWS_ENDPOINT_URL or S3_ENDPOINT_URL, keys from AWS_*."""
    bucket, _, path = url[len("s3://") :].partition("/")
    if not bucket:
        raise DataError(f"{url}: malformed URL; expected s3://bucket[/prefix]")
    endpoint = os.environ.get("AWS_ENDPOINT_URL") or os.environ.get("S3_ENDPOINT_URL") or None
    return Bucket(url, bucket, _as_prefix(path), endpoint)


def lakefs_location(url: str) -> Bucket:
    """`lakefs://repo/ref/path` through the lakeFS S3 gateway (endpoint and keys: `ul.storage`)."""
    try:  # the stage reports data errors: one line naming the source
        loc = LakeFSPath.parse(url)
    except StorageError as err:
        raise DataError(str(err)) from None
    try:
        endpoint, key, secret = gateway_settings()
    except StorageError as err:
        raise DataError(f"{url}: {err}", err.transient) from None
    return Bucket(url, loc.repo, f"{loc.ref}/" + _as_prefix(loc.path), endpoint, key, secret)


def _where(loc: Bucket) -> str:
    return f"{loc.url} (endpoint {redact_urls(loc.endpoint or 'AWS default')})"


MAX_EMPTY_PAGES = 100  # listing pages in a row with no object: an endless listing, not a bucket


def _key_problem(rel: str) -> str | None:
    """Why an object key (below the prefix) cannot be a file name here, or None."""
    parts = rel.split("/")
    if rel.startswith("/") or any(p in ("", ".", "..") for p in parts):
        return "has an empty, '.' or '..' path component"
    if any(len(p.encode("utf-8", "surrogatepass")) > 255 for p in parts):
        return "has a path component over 255 bytes"
    return bad_name(rel)


def _budgeted(loc: Bucket, pages) -> list[dict]:
    """The objects of the listing's pages, counted against the budgets as the pages arrive (an
    endless or enormous listing stops at the budget, not at the end), each key checked as a name."""
    from ul.data.fetch.archive import MAX_ENTRIES, MAX_UNCOMPRESSED_BYTES, shown_name

    objects, total, empty = [], 0, 0
    for page in pages:
        contents = page.get("Contents", [])
        empty = 0 if contents else empty + 1
        if empty > MAX_EMPTY_PAGES:
            raise DataError(f"{loc.url}: the listing sent {MAX_EMPTY_PAGES} pages in a row with no object; stopped")
        for o in contents:
            if o["Key"].endswith("/"):
                continue
            objects.append(o)
            total += o["Size"]
            if len(objects) > MAX_ENTRIES:
                raise DataError(f"{loc.url}: more than {MAX_ENTRIES:,} objects, over the budget; stopped listing")
            if total > MAX_UNCOMPRESSED_BYTES:
                raise DataError(f"{loc.url}: more than {MAX_UNCOMPRESSED_BYTES:,} bytes of objects, over the budget")
            if reason := _key_problem(o["Key"][len(loc.prefix) :]):
                raise DataError(f"{loc.url}: object key {shown_name(o['Key'])} {reason}; it cannot be a file name")
    return objects


def _budget(loc: Bucket, objects: list[dict]) -> None:
    """Refuse, before any download, a listing with a key that is both an object and a folder
    (`a` and `a/b.png`), which no folder can hold."""
    from ul.data.fetch.archive import shown_name

    keys = [o["Key"][len(loc.prefix) :] for o in objects]
    folders = {"/".join(k.split("/")[:i]) for k in keys for i in range(1, k.count("/") + 1)}
    if clash := sorted(set(keys) & folders):
        raise DataError(f"{loc.url}: key {shown_name(clash[0])} is both an object and a folder; refusing the listing")


def objects(loc: Bucket) -> ListedTree:
    """The objects under the prefix as a tree of files (key paths below the prefix, each checked as a
    name by `listing`), each streamed from the bucket when it is read: nothing is written to disk
    but the shards. A read gets at most the object's listed size (the listing's budget holds for the
    bytes too): a server that sends more is refused as it streams, one that sends less is "truncated"."""
    listed = {o["Key"][len(loc.prefix) :]: o for o in listing(loc)}
    with _errors(loc):
        client = s3.client(loc.endpoint, loc.access_key, loc.secret_key)

    def read(rel: str) -> Stream:
        obj = listed[rel]
        with _errors(loc):
            body = client.get_object(Bucket=loc.bucket, Key=obj["Key"])["Body"]
        return Stream(body, obj["Size"], f"{loc.url}: {obj['Key']}", lambda: _errors(loc))

    return ListedTree(loc.url, {rel: o["Size"] for rel, o in listed.items()}, read)


def listing(loc: Bucket, client=None) -> list[dict]:
    """The objects under the prefix (Key, Size, ETag, ...), within the budgets; nothing is downloaded."""
    with _errors(loc):
        client = client or s3.client(loc.endpoint, loc.access_key, loc.secret_key)
        pages = client.get_paginator("list_objects_v2").paginate(Bucket=loc.bucket, Prefix=loc.prefix)
        objects = _budgeted(loc, pages)
        if not objects:
            raise DataError(f"{_where(loc)}: no objects under s3://{loc.bucket}/{loc.prefix}")
        _budget(loc, objects)
    return objects


@contextlib.contextmanager
def _errors(loc: Bucket):
    """S3 client failures as one DataError naming the location (transient where a retry may work)."""
    from botocore.exceptions import BotoCoreError, ClientError, EndpointConnectionError, NoCredentialsError

    try:
        yield
    except EndpointConnectionError as err:
        raise DataError(
            f"cannot reach the S3 endpoint {redact_urls(str(err.kwargs.get('endpoint_url', loc.endpoint)))} "
            f"for {loc.url}: is the server running and the URL right?",
            transient=True,
        ) from None
    except NoCredentialsError:
        raise DataError(
            f"{_where(loc)}: no credentials found (set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY)"
        ) from None
    except ClientError as err:
        e = err.response.get("Error", {})
        status = err.response.get("ResponseMetadata", {}).get("HTTPStatusCode") or 0
        raise DataError(
            f"{_where(loc)}: {e.get('Code', '?')}: {e.get('Message', err)}", transient=status >= 500 or status == 429
        ) from None
    except BotoCoreError as err:  # connection resets, read timeouts: the transfer may work next time
        raise DataError(redact_urls(f"{_where(loc)}: {err}"), transient=True) from None
