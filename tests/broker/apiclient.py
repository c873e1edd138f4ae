"""A test client for /api that checks every response against the broker's own
/api/openapi.json, so no test can pass on a response the document does not describe."""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient
from openapi_core import OpenAPI
from openapi_core.testing import MockRequest, MockResponse

from broker.web.openapi import openapi_document


@cache
def spec() -> OpenAPI:
    return OpenAPI.from_dict(openapi_document())


@dataclass
class Result:
    status: int
    body: Any
    headers: dict[str, str]


class Api:
    def __init__(self, client: TestClient[web.Request, web.Application]) -> None:
        self.client = client

    async def call(
        self,
        method: str,
        path: str,
        token: str | None = None,
        *,
        params: dict[str, str] | None = None,
        data: bytes | None = None,
        headers: dict[str, str] | None = None,
        validate: bool = True,
    ) -> Result:
        hdrs = dict(headers or {})
        if token is not None:
            hdrs["Authorization"] = f"Bearer {token}"
        resp = await self.client.request(method, path, params=params, data=data, headers=hdrs)
        raw = await resp.read()
        assert resp.content_type == "application/json", (resp.status, raw[:200])
        body = json.loads(raw)
        if validate:
            request = MockRequest(
                "http://broker", method.lower(), path, args=params or {}, headers=hdrs
            )
            response = MockResponse(raw, resp.status, content_type="application/json")
            spec().validate_response(request, response)
        return Result(resp.status, body, dict(resp.headers))

    async def get(self, path: str, token: str | None = None, **kw: Any) -> Result:
        return await self.call("GET", path, token, **kw)

    async def post(self, path: str, token: str | None = None, **kw: Any) -> Result:
        return await self.call("POST", path, token, **kw)

    async def launch(self, workspace: str, token: str) -> Result:
        return await self.post(f"/api/workspaces/{workspace}/launch", token)
