"""An S3 server for the bucket tests: ``moto_server`` (moto[server], the test extra) in its
own process on 127.0.0.1 at a free port, started once per test session; a fresh bucket per
test, made with boto3, and the environment scandb reads its credentials from."""

from __future__ import annotations

import itertools
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import pytest

KEY_ID, SECRET, REGION = "testing-key", "testing-secret", "us-east-1"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class MotoServer:
    """moto's S3 server in a child process (nothing inside scandb is mocked)."""

    def __init__(self):
        for attempt in range(5):
            self.port = _free_port()
            self.endpoint = f"http://127.0.0.1:{self.port}"
            self.process = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1",
                                             "-p", str(self.port)],
                                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            # (not a pipe nobody reads: it logs every request, and blocks once the pipe is full)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline and self.process.poll() is None:
                try:
                    urllib.request.urlopen(f"{self.endpoint}/moto-api/", timeout=2).close()
                    self._names = itertools.count()
                    return
                except OSError:
                    time.sleep(0.05)
            self.stop()
        raise RuntimeError("moto_server did not start")

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name=REGION,
                            aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)

    def bucket(self) -> str:
        name = f"scandb-test-{os.getpid()}-{next(self._names)}"
        self.client().create_bucket(Bucket=name)
        return name

    def user_with_key(self, name: str = "scandb-tester") -> tuple[str, str]:
        """An IAM user allowed everything on S3, and its new access key (id, secret): the key
        a server checking keys (``check_keys``) accepts."""
        import boto3

        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name=REGION,
                           aws_access_key_id=KEY_ID, aws_secret_access_key=SECRET)
        iam.create_user(UserName=name)
        iam.put_user_policy(UserName=name, PolicyName="s3", PolicyDocument=json.dumps({
            "Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:*", "Resource": "*"}]}))
        key = iam.create_access_key(UserName=name)["AccessKey"]
        return key["AccessKeyId"], key["SecretAccessKey"]

    def check_keys(self) -> None:
        """From now on the server checks every request's signature and the key's IAM policy
        (moto's ``/moto-api/reset-auth``: requests allowed without a key drop to 0); by
        default moto accepts any key. For a server of its own: it stays so until stopped."""
        request = urllib.request.Request(f"{self.endpoint}/moto-api/reset-auth", data=b"0", method="POST",
                                         headers={"Content-Type": "text/plain"})  # not a form: moto reads the body
        urllib.request.urlopen(request, timeout=10).close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


@pytest.fixture(scope="session")
def moto_server():
    server = MotoServer()
    yield server
    server.stop()


@dataclass
class CheckingServer:
    """A moto server of its own that checks keys: a bucket on it, and the one key it accepts."""

    server: MotoServer
    bucket: str
    key_id: str
    secret: str


@pytest.fixture(scope="module")
def moto_server_checking_keys():
    """A second moto server, checking signatures against the keys made through its IAM API
    (the shared ``moto_server`` accepts any key)."""
    server = MotoServer()
    try:
        key_id, secret = server.user_with_key()
        bucket = server.bucket()
        server.check_keys()
        yield CheckingServer(server, bucket, key_id, secret)
    finally:
        server.stop()


@dataclass
class BucketUnderTest:
    server: MotoServer
    name: str
    url: str
    """The data path: ``s3://<bucket>/lab``."""
    cache: Path

    def keys(self, under: str = "") -> list[str]:
        """Every object's key under the data path (``under``: below it)."""
        start = f"lab/{under}"
        pages = self.server.client().get_paginator("list_objects_v2").paginate(Bucket=self.name, Prefix=start)
        return sorted(entry["Key"][len("lab/"):] for page in pages for entry in page.get("Contents", []))


def use_bucket(server: MotoServer, monkeypatch, cache: Path) -> BucketUnderTest:
    """A new bucket on ``server``, the credentials and endpoint in the environment (through
    ``monkeypatch``, so a module-scoped ``pytest.MonkeyPatch`` can share one), ``cache`` as
    the cache."""
    name = server.bucket()
    use_credentials(server, monkeypatch, cache)
    return BucketUnderTest(server, name, f"s3://{name}/lab", cache)


def use_credentials(server: MotoServer, monkeypatch, cache: Path, key_id: str = KEY_ID,
                    secret: str = SECRET) -> None:
    """The environment scandb reads for ``server``: this key, its endpoint, ``cache``."""
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", key_id)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", secret)
    monkeypatch.setenv("AWS_REGION", REGION)
    monkeypatch.setenv("AWS_ENDPOINT_URL", server.endpoint)
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("SCANDB_CACHE", str(cache))


@pytest.fixture
def s3_bucket(moto_server, tmp_path, monkeypatch) -> BucketUnderTest:
    """A new bucket, the credentials and endpoint in the environment, a cache in tmp_path."""
    return use_bucket(moto_server, monkeypatch, tmp_path / "cache")
