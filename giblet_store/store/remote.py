"""Object stores (``s3://`` and other fsspec URLs): storage options, probes and errors a user can act on.

Credentials and the endpoint come from the usual places: ``storage_options=`` given to
:func:`giblet_store.open_store`, the ``AWS_*`` environment variables (``AWS_ACCESS_KEY_ID``,
``AWS_SECRET_ACCESS_KEY``, ``AWS_ENDPOINT_URL``, ``AWS_PROFILE``) or an fsspec config file
(``~/.config/fsspec/s3.json``, ``FSSPEC_S3_*`` variables). They are never written to attributes,
logs, errors or ``--json`` output: messages name the store URL and the endpoint host only.

Defaults for ``s3://`` (overridable through ``storage_options``): a 5 s connect timeout, a 30 s read
timeout, 2 attempts (so an unreachable endpoint fails within about 15 s), and no listings cache
(another process may publish an entry at any moment; a cached listing would hide it).
"""

from __future__ import annotations

import uuid
from typing import Any, Mapping

from ..errors import StoreError
from ..validate import redact_url

__all__ = ["S3_DEFAULTS", "OBJECT_PROTOCOLS", "storage_options_for", "probe", "store_error", "redact",
           "unknown_protocol_error", "refuse_userinfo"]

#: protocols probed on open (bucket exists, credentials work, writes allowed)
OBJECT_PROTOCOLS = ("s3", "s3a", "gs", "gcs", "az", "abfs", "abfss")
#: the package that provides each common protocol
_PACKAGES = {"s3": "s3fs", "s3a": "s3fs", "gs": "gcsfs", "gcs": "gcsfs", "az": "adlfs", "abfs": "adlfs",
             "abfss": "adlfs"}

#: s3fs options used unless ``storage_options`` says otherwise.
S3_DEFAULTS: dict[str, Any] = {
    "use_listings_cache": False,
    "config_kwargs": {"connect_timeout": 5, "read_timeout": 30, "retries": {"max_attempts": 2}},
}

_SECRET_NAMES = ("key", "secret", "token", "password", "access_key_id", "secret_access_key", "session_token")


def protocol_of(url: str) -> str:
    return url.split("://", 1)[0].lower() if "://" in url else "file"


def unknown_protocol_error(url: str, exc: BaseException) -> StoreError:
    """The error for a URL whose protocol fsspec does not know, or whose package is not installed."""
    from fsspec.registry import known_implementations

    protocol = protocol_of(url)
    if protocol in known_implementations or protocol in _PACKAGES:
        package = _PACKAGES.get(protocol) or known_implementations[protocol].get("class", "").split(".")[0]
        extra = " (or pip install 'giblet_store[s3]')" if package == "s3fs" else ""
        return StoreError(f"cannot open {url!r}: no filesystem for protocol {protocol!r} is installed; install "
                          f"its fsspec package: pip install {package}{extra}")
    known = ", ".join(sorted(p for p in known_implementations if len(p) < 8)[:20])
    return StoreError(f"cannot open {url!r}: no filesystem for protocol {protocol!r} is known to fsspec; use a "
                      f"local directory or a known URL scheme ({known}, ...)")


def storage_options_for(url: str, given: Mapping[str, Any] | None) -> dict[str, Any]:
    """The fsspec options to open ``url`` with: the defaults for its protocol, then ``given``."""
    import os

    opts: dict[str, Any] = {}
    if protocol_of(url) in ("s3", "s3a"):
        opts = {k: (dict(v) if isinstance(v, dict) else v) for k, v in S3_DEFAULTS.items()}
        # what botocore would read from the environment anyway, made explicit so that fsspec's cached
        # filesystem instances follow the environment (they are keyed by options, not by os.environ)
        env = os.environ
        if env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL"):
            opts["endpoint_url"] = env.get("AWS_ENDPOINT_URL_S3") or env.get("AWS_ENDPOINT_URL")
        if env.get("AWS_ACCESS_KEY_ID") and env.get("AWS_SECRET_ACCESS_KEY"):
            opts["key"], opts["secret"] = env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]
            if env.get("AWS_SESSION_TOKEN"):
                opts["token"] = env["AWS_SESSION_TOKEN"]
    if given and ("key" in given or "secret" in given or "profile" in given):
        for k in ("key", "secret", "token"):  # given credentials replace the environment's as a whole
            opts.pop(k, None)
    for k, v in (given or {}).items():
        if isinstance(v, Mapping) and isinstance(opts.get(k), dict):
            opts[k] = {**opts[k], **v}
        else:
            opts[k] = v
    return opts


def redact(options: Mapping[str, Any]) -> dict[str, Any]:
    """``options`` with every credential-like value replaced by ``"***"`` (for messages and logs)."""
    out: dict[str, Any] = {}
    for k, v in options.items():
        if isinstance(v, Mapping):
            out[k] = redact(v)
        elif any(s in k.lower() for s in _SECRET_NAMES):
            out[k] = "***"
        else:
            out[k] = v
    return out


def _endpoint(fs) -> str:
    """The endpoint host a filesystem talks to (no credentials), or "" when it has none."""
    for obj in (getattr(fs, "client_kwargs", None) or {}, getattr(fs, "endpoint_url", None)):
        if isinstance(obj, dict) and obj.get("endpoint_url"):
            return str(obj["endpoint_url"])
        if isinstance(obj, str) and obj:
            return obj
    import os

    return os.environ.get("AWS_ENDPOINT_URL_S3") or os.environ.get("AWS_ENDPOINT_URL") or ""


def store_error(exc: BaseException, url: str, fs=None, action: str = "open") -> StoreError | None:
    """A :class:`StoreError` saying what went wrong talking to an object store, or None if ``exc`` is not that.

    Recognised: wrong or missing credentials and denied access (a read-only policy for a write),
    a missing bucket, an unreachable endpoint (connection refused, DNS, timeout).
    """
    where = f" at {_endpoint(fs)}" if fs is not None and _endpoint(fs) else ""
    name = type(exc).__name__
    text = str(exc)
    bucket = url.split("://", 1)[-1].split("/", 1)[0]
    if isinstance(exc, PermissionError) or name in ("NoCredentialsError", "PartialCredentialsError"):
        if "credential" in text.lower() or name.endswith("CredentialsError"):
            return StoreError(f"cannot {action} {url!r}: no usable credentials for the object store{where}; set "
                              f"AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), an fsspec config, or "
                              f"storage_options")
        return StoreError(f"cannot {action} {url!r}: access denied by the object store{where} (wrong credentials, "
                          f"or a policy that does not allow it: a read-only bucket cannot be written; open it "
                          f"with mode='r' to read). Nothing was written")
    if isinstance(exc, FileNotFoundError) and ("bucket" in text.lower() or "NoSuchBucket" in text):
        return StoreError(f"cannot {action} {url!r}: bucket {bucket!r} does not exist{where}; create it first "
                          f"(e.g. `aws s3 mb s3://{bucket}`) or fix the URL")
    unreachable = ("EndpointConnectionError", "ConnectTimeoutError", "ReadTimeoutError", "ClientConnectorError",
                   "ConnectionClosedError", "ServerTimeoutError")
    if name in unreachable or isinstance(exc, (ConnectionError, TimeoutError)) or (
        isinstance(exc, OSError) and any(u in text for u in unreachable + ("Could not connect",))
    ):
        return StoreError(f"cannot {action} {url!r}: the object store{where} cannot be reached "
                          f"({name}; gave up after the 5 s connect timeout and 2 attempts); check the endpoint "
                          f"(AWS_ENDPOINT_URL or storage_options['endpoint_url']) and the network")
    return None


def probe(fs, root: str, url: str, write: bool) -> bool:
    """Check an object store answers (and lets us write) before anything is written; True if ``root`` exists.

    The write probe PUTs and DELETEs one small object under ``root/_staging/``, so a read-only policy
    is reported before any entry byte is written.

    Raises
    ------
    StoreError
        Unreachable endpoint, wrong credentials, missing bucket or denied write.
    """
    bucket = root.split("/", 1)[0]
    try:
        try:
            fs.info(bucket)  # raises (unlike exists) for denied access and unreachable endpoints
        except FileNotFoundError:
            raise FileNotFoundError(f"NoSuchBucket: bucket {bucket} does not exist") from None
        exists = fs.exists(root)
        if write:
            probe_path = f"{root.rstrip('/')}/_staging/.probe-{uuid.uuid4().hex[:12]}"
            fs.pipe_file(probe_path, b"")
            fs.rm_file(probe_path)
        return exists
    except StoreError:
        raise
    except Exception as exc:  # noqa: BLE001 - translated below, or re-raised untouched
        err = store_error(exc, url, fs, "write to" if write else "open")
        if err is None:
            raise
        raise err from None


def refuse_userinfo(url: str) -> None:
    """A URL that carries credentials (``s3://KEY:SECRET@bucket/path``) is refused, never echoed."""
    netloc = url.split("://", 1)[1].split("/", 1)[0]
    if "@" in netloc or redact_url(url) != url:
        raise StoreError(
            f"store URL {redact_url(url)!r} carries credentials before '@'; a store URL is printed and recorded, "
            "so giblet_store refuses credentials in it. Give the URL without them and the credentials through "
            "AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, an AWS profile, or storage_options={'key': ..., 'secret': ...}")
