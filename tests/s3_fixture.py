"""A real S3 API for the tests: moto's server mode on 127.0.0.1 and a free port, with s3fs.

``s3_server`` (session) starts one :class:`moto.server.ThreadedMotoServer` (on a port the OS picks
at bind time) and points the AWS_* environment variables at it (inherited by subprocesses and Dask
workers); ``s3_url`` gives each test a fresh bucket. Credentials are fake and come only from the environment.
"""

from __future__ import annotations

import logging
import os
import socket
import uuid
from contextlib import contextmanager
from dataclasses import dataclass

import pytest

TEST_KEY_ID = "GIBLETTESTKEYID0000"
TEST_SECRET = "giblet-test-secret-never-printed-7f3a"


@dataclass(frozen=True)
class S3Server:
    endpoint: str
    port: int

    def new_bucket(self) -> str:
        import s3fs

        name = f"giblet-{uuid.uuid4().hex[:12]}"
        s3fs.S3FileSystem(use_listings_cache=False).mkdir(name)
        return name


@contextmanager
def refused_port():
    """A port on 127.0.0.1 that refuses every connection while the block runs: bound here (so no other
    process can start listening on it, as one could on a port merely found free) but never listening."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.fixture(scope="session")
def s3_server():
    pytest.importorskip("s3fs", reason="s3 tests need s3fs (pip install 'giblet_store[s3]')")
    moto_server = pytest.importorskip("moto.server", reason="s3 tests need moto[server]")
    logging.getLogger("werkzeug").setLevel(logging.ERROR)  # one line per request otherwise
    # port 0: the OS picks a free port at bind time. A port found free beforehand can be taken
    # by another process before moto binds it, and then ThreadedMotoServer.start() waits forever.
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    port = server.get_host_and_port()[1]
    env = {"AWS_ACCESS_KEY_ID": TEST_KEY_ID, "AWS_SECRET_ACCESS_KEY": TEST_SECRET,
           "AWS_DEFAULT_REGION": "us-east-1", "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}"}
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        yield S3Server(env["AWS_ENDPOINT_URL"], port)
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        server.stop()


@pytest.fixture
def s3_url(s3_server) -> str:
    """``s3://<fresh bucket>/store`` on the moto server (the store itself is not created)."""
    return f"s3://{s3_server.new_bucket()}/store"
