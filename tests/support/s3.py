"""An S3-compatible server for the tests: moto's standalone server (PyPI ``moto[server]``) as
a real subprocess on a free port, the stand-in for AWS, MinIO or Ceph RGW. Production uses a
real store; the clients (boto3, GDAL's ``/vsis3/``) speak the same HTTP API to both."""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass

import requests

#: Credentials moto accepts (any non-empty pair).
CREDENTIALS = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing",
               "AWS_REGION": "us-east-1"}


def free_port() -> int:
    """A TCP port nobody listens on now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@dataclass
class MotoServer:
    """A running ``moto.server`` process."""

    proc: subprocess.Popen
    port: int

    @property
    def endpoint(self) -> str:
        """Its URL (``AWS_ENDPOINT_URL``)."""
        return f"http://127.0.0.1:{self.port}"

    def env(self) -> dict[str, str]:
        """The variables that point boto3 and GDAL at it."""
        return {**CREDENTIALS, "AWS_ENDPOINT_URL": self.endpoint,
                "AWS_S3_ENDPOINT": f"127.0.0.1:{self.port}", "AWS_HTTPS": "NO",
                "AWS_VIRTUAL_HOSTING": "FALSE"}

    def client(self):
        """A boto3 S3 client of this server."""
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, region_name="us-east-1",
                            aws_access_key_id="testing", aws_secret_access_key="testing")

    def bucket(self, name: str) -> str:
        """Create the bucket ``name``; returns it."""
        self.client().create_bucket(Bucket=name)
        return name

    def keys(self, bucket: str, prefix: str = "") -> list[str]:
        """Every key of ``bucket`` under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket,
                                                                         Prefix=prefix)
        return sorted(o["Key"] for page in pages for o in page.get("Contents", []))

    def stop(self) -> None:
        """Stop the server (its objects are gone with it)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@contextlib.contextmanager
def moto_server() -> Iterator[MotoServer]:
    """Start ``python -m moto.server`` on a free port and wait until it answers."""
    port = free_port()
    proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p",
                             str(port)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            env={**os.environ, **CREDENTIALS})
    server = MotoServer(proc, port)
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, "moto.server exited at start"
            try:
                requests.get(server.endpoint, timeout=2)
                break
            except requests.ConnectionError:
                assert time.monotonic() < deadline, "moto.server did not start in 60 s"
                time.sleep(0.1)
        yield server
    finally:
        server.stop()
