"""HTTP client of the NetBird Management API: auth, timeouts, retries, error translation.

Every call carries ``Authorization: Token <PAT>``, has a timeout, and is
retried with exponential backoff and jitter on 429, 5xx, timeouts and
connection errors, bounded both in count and in total time. NetBird's
answers are translated into the provider errors of `tunnels.base`:

==========================  =============================================
NetBird answer              raised
==========================  =============================================
401                         `TunnelConfigError` (bad service-user token)
403                         `TunnelConfigError` (role lacks permission)
404                         `NetBirdNotFound` (a `TunnelConfigError`)
409                         `NetBirdConflict` (a `TunnelRejected`)
400, 422                    `TunnelRejected`
429, 5xx, timeout, reset    retried, then `TunnelUnavailable`
2xx with a non-JSON body    `TunnelRejected`
==========================  =============================================

A create (POST) that may have been applied before its answer was lost
(timeout, dropped connection, 5xx) is only retried after a `Lookup` found
nothing, so nothing is created twice. Every NetBird answer is logged with its
``X-Request-Id``: at debug level on success, warning on failure (info for
404, which several flows expect). The token never appears in logs or errors.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import aiohttp

from tunnels.base import (
    TunnelConfigError,
    TunnelError,
    TunnelRejected,
    TunnelUnavailable,
)
from tunnels.netbird.settings import RetryPolicy

log = logging.getLogger("tunnels.netbird")

_MAX_MESSAGE = 300


class NetBirdNotFound(TunnelConfigError):
    """NetBird answered 404: the object does not exist (or no longer does)."""

    code = "tunnel_not_found"


class NetBirdConflict(TunnelRejected):
    """NetBird answered 409: the object exists already (e.g. a group name)."""

    code = "tunnel_conflict"


@dataclass(frozen=True, slots=True)
class Lookup:
    """How to find what an interrupted create may already have made.

    The client GETs ``path`` and hands the decoded body to ``pick``, which
    returns the object the create would have returned, or ``None``.
    """

    path: str
    pick: Callable[[Any], Any | None]


class _Retryable(Exception):
    """One attempt failed in a way worth retrying."""

    def __init__(self, description: str, *, maybe_applied: bool) -> None:
        super().__init__(description)
        self.description = description
        self.maybe_applied = maybe_applied


class NetBirdClient:
    """Talks to one NetBird management server with one service-user token.

    Pass ``session`` to share an `aiohttp.ClientSession` (the caller then
    closes it); otherwise the client makes its own and `aclose` closes it.
    """

    def __init__(
        self,
        base_url: str,
        token: str,
        *,
        timeout: float,
        retry: RetryPolicy,
        session: aiohttp.ClientSession | None = None,
        rng: random.Random | None = None,
    ) -> None:
        self._base = base_url.rstrip("/")
        self._token = token
        self._timeout = timeout
        self._retry = retry
        self._session = session
        self._owns_session = session is None
        self._rng = rng or random.Random()
        self._headers = {
            "Authorization": f"Token {token}",
            "Accept": "application/json",
        }

    async def get(self, path: str, *, params: Mapping[str, str] | None = None) -> Any:
        """GET ``path``; the decoded JSON body (``None`` for an empty one)."""
        return await self._call("GET", path, params=params)

    async def post(self, path: str, body: object, *, lookup: Lookup | None = None) -> Any:
        """POST ``body``. Without ``lookup``, a create whose fate is unknown is
        not retried: `TunnelUnavailable` says it may or may not exist."""
        return await self._call("POST", path, body=body, lookup=lookup)

    async def put(self, path: str, body: object) -> Any:
        """PUT (full replacement, so safe to repeat)."""
        return await self._call("PUT", path, body=body)

    async def delete(self, path: str) -> bool:
        """DELETE ``path``: ``True`` if deleted now, ``False`` if already gone."""
        try:
            await self._call("DELETE", path)
        except NetBirdNotFound:
            return False
        return True

    async def aclose(self) -> None:
        if self._owns_session and self._session is not None:
            await self._session.close()
        self._session = None

    async def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        body: object = None,
        lookup: Lookup | None = None,
    ) -> Any:
        loop = asyncio.get_running_loop()
        started = loop.time()
        deadline = started + self._retry.max_total
        must_look = False
        retries = 0
        while True:
            try:
                if must_look and lookup is not None:
                    found = await self._look(lookup, deadline)
                    if found is not None:
                        log.info("NetBird %s %s: found what the lost attempt made", method, path)
                        return found
                    must_look = False
                return await self._once(method, path, params, body, deadline)
            except _Retryable as exc:
                if exc.maybe_applied and method == "POST":
                    if lookup is None:
                        raise TunnelUnavailable(
                            f"NetBird did not confirm {method} {path} ({exc.description}); "
                            "it may or may not have been applied"
                        ) from None
                    must_look = True
                retries += 1
                pause = self._retry.delay(retries, self._rng)
                if retries > self._retry.max_retries or loop.time() + pause >= deadline:
                    raise TunnelUnavailable(
                        f"NetBird is unavailable: {method} {path} failed {retries} times "
                        f"in {loop.time() - started:.1f}s (last: {exc.description})"
                    ) from None
                await asyncio.sleep(pause)

    async def _look(self, lookup: Lookup, deadline: float) -> Any:
        try:
            return lookup.pick(await self._once("GET", lookup.path, None, None, deadline))
        except NetBirdNotFound:
            return None

    async def _once(
        self,
        method: str,
        path: str,
        params: Mapping[str, str] | None,
        body: object,
        deadline: float,
    ) -> Any:
        loop = asyncio.get_running_loop()
        limit = max(0.01, min(self._timeout, deadline - loop.time()))
        shown = _shown(path, params)
        try:
            async with self._client().request(
                method,
                self._base + path,
                params=params,
                json=body,
                headers=self._headers,
                timeout=aiohttp.ClientTimeout(total=limit),
                allow_redirects=False,
            ) as resp:
                raw = await resp.read()
                status = resp.status
                request_id = resp.headers.get("X-Request-Id", "-")
        except TimeoutError:
            log.warning("NetBird %s %s: no answer within %.1fs", method, shown, limit)
            raise _Retryable(f"no answer within {limit:.1f}s", maybe_applied=True) from None
        except aiohttp.ClientConnectorError as exc:
            log.warning("NetBird %s %s: cannot connect (%s)", method, shown, type(exc).__name__)
            raise _Retryable("cannot connect", maybe_applied=False) from None
        except aiohttp.ClientError as exc:
            log.warning("NetBird %s %s: connection failed (%s)", method, shown, type(exc).__name__)
            what = f"connection failed ({type(exc).__name__})"
            raise _Retryable(what, maybe_applied=True) from None
        return self._outcome(method, shown, status, raw, request_id)

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        return self._session

    def _outcome(self, method: str, path: str, status: int, raw: bytes, request_id: str) -> Any:
        where = f"{method} {path}"
        if 200 <= status < 300:
            log.debug("NetBird %s -> %d (request id %s)", where, status, request_id)
            return self._decode(where, raw, request_id)
        message = self._message(raw)
        level = logging.INFO if status == 404 else logging.WARNING
        log.log(level, "NetBird %s -> %d (request id %s): %s", where, status, request_id, message)
        if status == 429 or status >= 500:
            raise _Retryable(f"HTTP {status}, request id {request_id}", maybe_applied=status >= 500)
        raise _error_for(status, where, message, request_id)

    def _decode(self, where: str, raw: bytes, request_id: str) -> Any:
        if not raw.strip():
            return None
        try:
            return json.loads(raw)
        except ValueError:
            raise TunnelRejected(
                f"NetBird answered {where} with a body that is not JSON (request id {request_id})"
            ) from None

    def _message(self, raw: bytes) -> str:
        """NetBird's ``message`` (or the raw text), shortened, token removed."""
        text = raw.decode("utf-8", "replace")
        try:
            data = json.loads(text)
        except ValueError:
            data = None
        if isinstance(data, dict) and isinstance(data.get("message"), str):
            text = data["message"]
        if self._token:
            text = text.replace(self._token, "[redacted]")
        text = " ".join(text.split())
        return text[:_MAX_MESSAGE] or "(no message)"


def _shown(path: str, params: Mapping[str, str] | None) -> str:
    return f"{path}?{urlencode(params)}" if params else path


def _error_for(status: int, where: str, message: str, request_id: str) -> TunnelError:
    suffix = f"(HTTP {status} on {where}, request id {request_id}): {message}"
    if status == 401:
        return TunnelConfigError(f"NetBird rejected the service-user token {suffix}")
    if status == 403:
        return TunnelConfigError(
            "NetBird refused the service user's role this operation; it needs "
            f"network_admin (admin for setup keys) {suffix}"
        )
    if status == 404:
        return NetBirdNotFound(f"NetBird has no such object {suffix}")
    if status == 409:
        return NetBirdConflict(f"NetBird reported a conflict {suffix}")
    if status in (400, 422):
        return TunnelRejected(f"NetBird refused the request as invalid {suffix}")
    return TunnelError(f"NetBird answered unexpectedly {suffix}")
