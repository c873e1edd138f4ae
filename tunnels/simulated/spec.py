"""NetBird's official OpenAPI spec, patched in memory to what real servers do, as a validator.

``netbird_openapi.yml`` beside this module is a verbatim copy of NetBird's
spec (see ``NETBIRD_OPENAPI.md``); it is never edited. `patch_spec` fixes
in memory what the servers contradict (``shared/netbird/NOTES.md``):

- ``ResourceType`` is an unsatisfiable ``allOf``: it becomes
  ``enum: [host, subnet, domain, peer]``;
- the lists servers answer as ``null`` when empty may be ``null``;
- every operation may answer 400, 401, 403, 404, 409, 422, 429 and 500 with
  ``{"message", "code"}``, and a DELETE answers ``{}``;
- a setup key's ``expires_in`` may be below 86400 (0 means never).

Requests are validated strictly; responses only in the simulator's tests.
"""

from __future__ import annotations

import copy
import functools
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml  # type: ignore[import-untyped]  # no stubs installed; used for one load
from multidict import CIMultiDict, MultiDict
from openapi_core import Config, OpenAPI
from openapi_core.datatypes import RequestParameters

SPEC_PATH = Path(__file__).parents[1] / "netbird" / "openapi.yml"
_HOST_URL = "https://api.netbird.io"
_ERROR_STATUSES = ("400", "401", "403", "404", "409", "422", "429", "500")
_NULLABLE_LISTS = {
    "GroupRequest": ("peers", "resources"),
    "Group": ("peers", "resources"),
    "PolicyRuleUpdate": ("sources", "destinations"),
    "PolicyRuleCreate": ("sources", "destinations"),
    "PolicyRule": ("sources", "destinations"),
    "PolicyUpdate": ("source_posture_checks",),
    "PolicyCreate": ("source_posture_checks",),
    "Policy": ("source_posture_checks",),
}


@dataclass(frozen=True, slots=True)
class Verdict:
    """What the spec says of one request. ``wrong_type``: a value has the
    wrong JSON type, which NetBird's decoder refuses with 400, not 422."""

    errors: tuple[str, ...] = ()
    wrong_type: bool = False

    @property
    def ok(self) -> bool:
        return not self.errors


@functools.cache
def load_spec(path: Path = SPEC_PATH) -> OpenAPI:
    """The patched spec as an `OpenAPI` validator, parsed once per path."""
    with path.open("rb") as f:
        doc = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    # The file is NetBird's, checked by its authors; validating 14k lines of
    # it on every start would cost seconds (the tests check it once).
    return OpenAPI.from_dict(patch_spec(doc), config=Config(spec_validator_cls=None))


def patch_spec(doc: Mapping[str, Any]) -> dict[str, Any]:
    """A patched deep copy of the parsed spec (see the module docstring)."""
    spec: dict[str, Any] = copy.deepcopy(dict(doc))
    schemas = spec["components"]["schemas"]
    schemas["ResourceType"] = {"type": "string", "enum": ["host", "subnet", "domain", "peer"]}
    for schema_name, props in _NULLABLE_LISTS.items():
        for prop in _properties(schemas[schema_name], props):
            prop["type"] = ["array", "null"]
    schemas["ErrorResponse"]["properties"]["code"] = {"type": "integer"}
    schemas["CreateSetupKeyRequest"]["properties"]["expires_in"]["minimum"] = 0
    error = {
        "description": "NetBird error",
        "content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorResponse"}}},
    }
    for methods in spec["paths"].values():
        for method, operation in methods.items():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses = operation["responses"]
            responses.update(dict.fromkeys(_ERROR_STATUSES, error))
            if method == "delete":
                responses["200"] = {
                    "description": "Deleted",
                    "content": {"application/json": {"schema": {"type": "object"}}},
                }
    return spec


def check_request(
    spec: OpenAPI,
    method: str,
    path: str,
    *,
    query: Mapping[str, str] | None = None,
    headers: Mapping[str, str] | None = None,
    body: bytes | None = None,
) -> Verdict:
    """Validate one request against the spec."""
    request = _Request(method, path, query or {}, headers or {}, body)
    return _verdict(spec.unmarshal_request(request).errors)


def check_response(
    spec: OpenAPI,
    method: str,
    path: str,
    status: int,
    body: bytes,
    *,
    query: Mapping[str, str] | None = None,
) -> Verdict:
    """Validate one response (to a request for ``method path``) against the spec."""
    request = _Request(method, path, query or {}, {}, None)
    response = _Response(status, body)
    return _verdict(spec.unmarshal_response(request, response).errors)


def _properties(schema: dict[str, Any], names: tuple[str, ...]) -> Iterator[dict[str, Any]]:
    """The property schemas called ``names`` in ``schema`` or its ``allOf`` parts."""
    parts = [schema, *schema.get("allOf", [])]
    for part in parts:
        for name, prop in part.get("properties", {}).items():
            if name in names:
                yield prop


def _verdict(errors: Iterable[Exception]) -> Verdict:
    messages: list[str] = []
    wrong_type = False
    for error in errors:
        details = list(_schema_errors(error))
        wrong_type = wrong_type or any(e.validator == "type" for e in details)
        if not details:
            messages.append(f"{type(error).__name__}: {error}")
        for detail in details:
            where = "/".join(str(p) for p in detail.absolute_path) or "body"
            messages.append(f"{where}: {detail.message}")
    return Verdict(tuple(messages), wrong_type)


def _schema_errors(error: BaseException) -> Iterator[Any]:
    """The jsonschema ``ValidationError`` leaves under an openapi-core error."""
    seen: set[int] = set()
    cause: BaseException | None = error
    while cause is not None and id(cause) not in seen:
        seen.add(id(cause))
        for detail in getattr(cause, "schema_errors", ()) or ():
            yield from _leaves(detail)
        cause = cause.__cause__ or cause.__context__


def _leaves(error: Any) -> Iterator[Any]:
    if error.context:
        for sub in error.context:
            yield from _leaves(sub)
    else:
        yield error


class _Request:
    """The request shape openapi-core reads."""

    host_url = _HOST_URL

    def __init__(
        self,
        method: str,
        path: str,
        query: Mapping[str, str],
        headers: Mapping[str, str],
        body: bytes | None,
    ) -> None:
        self.method = method.lower()
        self.path = path
        self.body = body
        self.content_type = "application/json"
        self.parameters = RequestParameters(query=MultiDict(query), header=CIMultiDict(headers))


class _Response:
    """The response shape openapi-core reads."""

    def __init__(self, status: int, body: bytes) -> None:
        self.status_code = status
        self.data = body
        self.content_type = "application/json"
        self.headers: CIMultiDict[str] = CIMultiDict()
