"""A Ray session for a study: a local Ray sized to the trials' threads, or a cluster, its
temporary folder short enough for Unix sockets, and token authentication as the cluster asks."""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import ray as _ray

log = logging.getLogger(__name__)


def _short_tmpdir(project_root: Path) -> str:
    """RAY_TMPDIR inside the project when its path is short enough for Unix sockets."""
    candidate = project_root / ".ray"
    if len(str(candidate)) <= 40:
        candidate.mkdir(parents=True, exist_ok=True)
        return str(candidate)
    return tempfile.mkdtemp(prefix="sray")


_AUTH_VARS = ("RAY_AUTH_MODE", "RAY_AUTH_TOKEN", "RAY_AUTH_TOKEN_PATH")


def _require_token(token: str) -> dict[str, str | None]:
    """Token authentication with ``token`` for the local Ray this process starts (its child
    processes inherit the environment). Ray caches
    the mode and the token per process, so both caches are refreshed. Returns the previous
    values of the variables (to restore them with :func:`_restore_auth`)."""
    before = {k: os.environ.get(k) for k in _AUTH_VARS}
    os.environ["RAY_AUTH_MODE"] = "token"
    os.environ["RAY_AUTH_TOKEN"] = token
    os.environ.pop("RAY_AUTH_TOKEN_PATH", None)
    _refresh_auth()
    return before


def _restore_auth(before: dict[str, str | None]) -> None:
    for key, value in before.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value
    _refresh_auth()


def _refresh_auth() -> None:
    try:  # Ray 2.60's own refresh (ray._private.authentication); absent elsewhere
        from ray._raylet import AuthenticationTokenLoader, Config  # type: ignore[attr-defined]

        Config.initialize("")
        AuthenticationTokenLoader.instance().reset_cache()
    except (ImportError, AttributeError):  # a Ray without these reads the environment
        pass


@contextlib.contextmanager
def ray_session(
    address: str | None, num_cpus: int, project_root: Path, num_gpus: int | None = None
) -> Iterator[None]:
    """Connect to ``address`` (or ``$RAY_ADDRESS``), else start a local Ray of ``num_cpus``
    whose every gRPC request must carry a random token of this session (token auth); shut
    it down (and restore the environment) on exit."""
    address = address or os.environ.get("RAY_ADDRESS") or None
    if address:
        log.info("connecting to the Ray cluster at %s", address)
        _ray.init(address=address, log_to_driver=False)
        try:
            yield
        finally:
            _ray.shutdown()
        return
    os.environ.setdefault("RAY_TMPDIR", _short_tmpdir(project_root))
    # Ray 2.60 cannot bind a local cluster to loopback (it resolves 127.0.0.1 to the node's
    # address and its gRPC servers listen on every interface), so the embedded Ray requires
    # a fresh random token of this session on every request: nothing else can talk to it.
    before = _require_token(secrets.token_hex(32))
    kwargs: dict[str, Any] = {
        "num_cpus": num_cpus,
        "include_dashboard": False,
        "log_to_driver": False,
    }
    if num_gpus is not None:
        kwargs["num_gpus"] = num_gpus
    try:
        _ray.init(**kwargs)
        yield
    finally:
        _ray.shutdown()
        _restore_auth(before)
