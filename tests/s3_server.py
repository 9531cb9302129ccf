"""A real S3-compatible server on 127.0.0.1 for tests: moto's standalone server in a process of its own.

The run talks to it the way it talks to AWS: through pyarrow's S3 filesystem, configured only by the
standard environment (``AWS_ENDPOINT_URL``, keys, region), never by the URI.
"""

from __future__ import annotations

import subprocess
import sys
import time
import urllib.request
from pathlib import Path

from ray_head import free_ports

ACCESS_KEY = "AKIARAYGENRETESTKEY1"
SECRET_KEY = "raygenre-test-secret-must-never-be-logged"


class S3Server:
    """``python -m moto.server`` on a free port; ``env`` is what a client process needs to reach it."""

    def __init__(self, log: Path):
        self.port = free_ports(1)[0]
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.env = {"AWS_ENDPOINT_URL": self.endpoint, "AWS_ACCESS_KEY_ID": ACCESS_KEY,
                    "AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_DEFAULT_REGION": "us-east-1",
                    "AWS_EC2_METADATA_DISABLED": "true"}
        self._log = open(log, "w")
        self.proc = subprocess.Popen([sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
                                     stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.time() + 60
        while True:
            try:
                urllib.request.urlopen(self.endpoint, timeout=2)
                break
            except OSError:
                assert self.proc.poll() is None and time.time() < deadline, f"moto server did not start: see {log}"
                time.sleep(0.3)

    def client(self):
        import boto3

        return boto3.client("s3", endpoint_url=self.endpoint, aws_access_key_id=ACCESS_KEY,
                            aws_secret_access_key=SECRET_KEY, region_name="us-east-1")

    def make_bucket(self, name: str) -> None:
        self.client().create_bucket(Bucket=name)

    def objects(self, bucket: str, prefix: str = "") -> dict[str, dict]:
        """key -> {"size", "etag"} of every object under ``prefix``."""
        pages = self.client().get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix)
        return {o["Key"]: {"size": o["Size"], "etag": o["ETag"].strip('"')}
                for page in pages for o in page.get("Contents", [])}

    def read(self, bucket: str, key: str) -> bytes:
        return self.client().get_object(Bucket=bucket, Key=key)["Body"].read()

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self._log.close()


def use_in_this_process(server: S3Server, monkeypatch) -> None:
    """Point this process's pyarrow at ``server`` (and forget filesystems made for another endpoint)."""
    from raygenre import storage

    for key, value in server.env.items():
        monkeypatch.setenv(key, value)
    storage._filesystem.cache_clear()
    monkeypatch.delenv("AWS_PROFILE", raising=False)
