"""Endpoints that misbehave (third hostile round, class 3): an S3-compatible listing that never
ends, served by a real HTTP server on 127.0.0.1, stops at the budgets as it streams; object keys
that S3 allows but no file name can be (on a real moto server) are one error naming the key."""

from __future__ import annotations

import itertools
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import pytest

from ul.data.fetch import archive
from ul.data.fetch.sources import fetch
from ul.data.layout import DataError

PAGE = """<?xml version="1.0" encoding="UTF-8"?>
<ListBucketResult xmlns="http://s3.amazonaws.com/doc/2006-03-01/">
<Name>b</Name><Prefix></Prefix><KeyCount>{n}</KeyCount><MaxKeys>1000</MaxKeys><IsTruncated>true</IsTruncated>
{contents}<NextContinuationToken>t{token}</NextContinuationToken></ListBucketResult>"""
OBJECT = '<Contents><Key>img/{i}.png</Key><Size>10</Size><ETag>"e{i}"</ETag></Contents>'


class EndlessListing(ThreadingHTTPServer):
    """ListObjectsV2 answered forever: each page truncated, with a fresh token and `per_page` objects
    (or, with `body`, one last page of two objects listed at 10 bytes whose GET sends `body`)."""

    def __init__(self, per_page: int, body: bytes | None = None):
        self.per_page, self.pages, self.counter, self.body = per_page, 0, itertools.count(), body
        super().__init__(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.serve_forever, daemon=True).start()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):  # noqa: N802 (http.server's name)
        srv = self.server
        query = parse_qs(urlsplit(self.path).query)
        if srv.body is not None and "list-type" not in query:  # GET of an object
            return self._send(srv.body, "application/octet-stream")
        srv.pages += 1
        assert query.get("list-type") == ["2"], self.path
        objects = "".join(OBJECT.format(i=next(srv.counter)) for _ in range(srv.per_page))
        body = PAGE.format(n=srv.per_page, contents=objects, token=srv.pages)
        if srv.body is not None:
            body = body.replace("<IsTruncated>true", "<IsTruncated>false")
        self._send(body.encode(), "application/xml")

    def _send(self, body: bytes, kind: str):
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


@pytest.fixture
def s3_env(monkeypatch):
    for var, value in (("AWS_ACCESS_KEY_ID", "k"), ("AWS_SECRET_ACCESS_KEY", "s"), ("AWS_MAX_ATTEMPTS", "1")):
        monkeypatch.setenv(var, value)
    return monkeypatch


@pytest.mark.parametrize(
    "per_page, message",
    [(0, "100 pages in a row with no object; stopped"), (7, "more than 500 objects, over the budget; stopped listing")],
)
def test_an_endless_listing_stops_at_the_budget_as_it_streams(tmp_path, s3_env, per_page, message):
    s3_env.setattr(archive, "MAX_ENTRIES", 500)
    srv = EndlessListing(per_page)
    s3_env.setenv("AWS_ENDPOINT_URL", srv.url)
    try:
        start = time.monotonic()
        with pytest.raises(DataError, match=message):
            fetch("s3://b/", tmp_path / "raw")
        assert time.monotonic() - start < 60 and srv.pages <= 101
    finally:
        srv.shutdown()
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "key, reason",
    [
        ("train/" + "x" * 300 + ".png", "has a path component over 255 bytes"),
        ("train/./a.png", "has an empty, '.' or '..' path component"),
        ("train//a.png", "has an empty, '.' or '..' path component"),
        ("train/a\tb.png", "file name has control characters"),
    ],
)
def test_a_key_that_cannot_be_a_file_name_is_one_error_naming_it(tmp_path, s3_env, moto_endpoint, key, reason):
    import boto3

    s3_env.setenv("AWS_ENDPOINT_URL", moto_endpoint)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"names{abs(hash(key)) % 10**8}"
    s3.create_bucket(Bucket=bucket)
    for k in ("train/ok.png", "test/ok.png", key):
        s3.put_object(Bucket=bucket, Key=f"p/{k}", Body=b"not read")
    with pytest.raises(DataError, match=f"object key .* {reason}; it cannot be a file name") as err:
        fetch(f"s3://{bucket}/p", tmp_path / "raw")
    assert str(err.value).count("\n") == 0
    assert not (tmp_path / "raw").exists()


@pytest.mark.parametrize(
    "body, message",
    [(b"x" * (8 << 20), "sent more than its listed 10 bytes; refused"), (b"short", "truncated: 5 of 10")],
)
def test_an_object_that_is_not_its_listed_size_is_refused_as_it_streams(tmp_path, s3_env, body, message):
    srv = EndlessListing(2, body)
    s3_env.setenv("AWS_ENDPOINT_URL", srv.url)
    try:
        with pytest.raises(DataError, match=message):
            fetch("s3://b/", tmp_path / "raw")
    finally:
        srv.shutdown()
    assert not (tmp_path / "raw").exists() and not any(
        p.stat().st_size > 1 << 20 for p in tmp_path.rglob("*") if p.is_file()
    )
