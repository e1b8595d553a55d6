"""Bad input on object stores: exit 2, a specific message, nothing written -- unreachable endpoint, wrong
credentials, missing bucket, no s3fs, unknown URL scheme, a read-only policy for a write."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from giblet_store import open_store
from giblet_store.errors import StoreError

from s3_fixture import TEST_KEY_ID, TEST_SECRET, refused_port
from helpers import write
from helpers import assert_no_secret, objects


@pytest.fixture
def iam(s3_server, monkeypatch):
    """Moto with authentication on: (admin keys, read-only keys); env credentials are not IAM keys."""
    import boto3
    from moto import settings

    client = boto3.client("iam", endpoint_url=s3_server.endpoint, region_name="us-east-1")
    keys = {}
    for name, actions in (("admin", ["*"]), ("reader", ["s3:Get*", "s3:List*", "s3:Head*"])):
        user = f"{name}-{os.urandom(4).hex()}"
        client.create_user(UserName=user)
        client.put_user_policy(UserName=user, PolicyName="p", PolicyDocument=json.dumps(
            {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": actions, "Resource": "*"}]}))
        k = client.create_access_key(UserName=user)["AccessKey"]
        keys[name] = (k["AccessKeyId"], k["SecretAccessKey"])
    monkeypatch.setattr(settings, "INITIAL_NO_AUTH_ACTION_COUNT", 0)
    return keys


def test_missing_bucket_and_unknown_scheme(run, s3_server):
    code, out, err = run("ls", "s3://no-such-bucket-13/store")
    assert code == 2 and "bucket 'no-such-bucket-13' does not exist" in err and "Traceback" not in err
    code, out, err = run("extract", "x.wav", "--store", "nosuchfs://b/store")
    assert code == 2 and "no filesystem for protocol 'nosuchfs'" in err
    assert_no_secret(out, err)


def test_unreachable_endpoint(run, s3_url, monkeypatch):
    with refused_port() as port:  # nothing listens there, and nothing can start to during the test
        monkeypatch.setenv("AWS_ENDPOINT_URL", f"http://127.0.0.1:{port}")
        code, out, err = run("ls", s3_url)
        assert code == 2 and "cannot be reached" in err and "AWS_ENDPOINT_URL" in err
        with pytest.raises(StoreError, match="cannot be reached"):
            open_store(s3_url, storage_options={"endpoint_url": f"http://127.0.0.1:{port}"})
    assert_no_secret(out, err)


def test_wrong_credentials_and_read_only_policy(run, s3_url, iam, monkeypatch, tmp_path):
    admin, reader = iam["admin"], iam["reader"]
    store = open_store(s3_url, storage_options={"key": admin[0], "secret": admin[1]})
    e = write(store, 1)
    before = {k: v for k, v in objects_as(admin, s3_url).items()}
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAWRONGWRONGWRONG0")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "wrong-secret-value-13")
    code, out, err = run("ls", s3_url, "--json")
    assert code == 2 and "access denied" in err and "wrong credentials" in err
    assert "wrong-secret-value-13" not in err + out
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", reader[0])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", reader[1])
    code, out, err = run("ls", s3_url, "--json")  # reading is allowed
    assert code == 0 and [x["key"] for x in json.loads(out)["entries"]] == [e.key]
    code, out, err = run("derive", s3_url, e.key[:12], "--resample-tr", "1.0")  # a write is not
    assert code == 2 and "access denied" in err and "read-only" in err and "Nothing was written" in err
    assert reader[1] not in err + out and admin[1] not in err + out
    assert objects_as(admin, s3_url) == before  # nothing written


def objects_as(keys, url: str) -> dict[str, bytes]:
    import s3fs

    fs = s3fs.S3FileSystem(key=keys[0], secret=keys[1], use_listings_cache=False)
    root = url.split("://", 1)[1]
    return {p: fs.cat_file(p) for p in sorted(fs.find(root))}


def test_no_s3fs_installed_gives_an_install_hint(tmp_path):
    code = ("import sys; sys.modules['s3fs'] = None\n"
            "from giblet_store.cli import main\n"
            "sys.exit(main(['ls', 's3://bucket/store']))")
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).parents[2])}
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert p.returncode == 2, p.stderr
    assert "no filesystem for protocol 's3' is installed" in p.stderr and "pip install s3fs" in p.stderr and "Traceback" not in p.stderr


# ------------------------------------------------------------------------ issue 21 #10: credentials in a store URL
@pytest.mark.parametrize("argv", [["ls", "{url}"], ["verify", "{url}"], ["gc", "{url}", "--dry-run"],
                                  ["extract", "missing.wav", "--store", "{url}"], ["show", "{url}", "abcd"]])
def test_credentials_in_a_store_url_are_refused_and_never_printed(capsys, argv):
    from giblet_store.cli import main

    url = f"s3://{TEST_KEY_ID}:{TEST_SECRET}/x@bucket/st"  # a secret with a '/' in it, as AWS secrets may have
    code = main([a.format(url=url) for a in argv])
    out, err = capsys.readouterr()
    assert code == 2 and "s3://***@bucket/st" in err and "carries credentials" in err, out + err
    assert "unexpected" not in err
    assert_no_secret(out, err)


def test_redact_url_and_store_repr():
    from giblet_store.validate import redact_url

    assert redact_url("at s3://K:S@b/p and gs://u@h/x, not a@b") == "at s3://***@b/p and gs://***@h/x, not a@b"
    assert redact_url("s3://bucket/path") == "s3://bucket/path"
    with pytest.raises(StoreError, match=r"'s3://\*\*\*@b/p' carries credentials"):
        open_store("s3://K:S@b/p")
    assert "S@" not in repr(open_store("memory://redact-repr"))
