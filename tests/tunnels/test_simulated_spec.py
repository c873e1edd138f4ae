"""The vendored spec is NetBird's, and the in-memory patches are the documented ones."""

from __future__ import annotations

import hashlib
import json

import pytest
import yaml  # type: ignore[import-untyped]
from openapi_spec_validator import validate

from tests.tunnels.conftest import NETWORK_ADMIN
from tunnels.netbird.models import grant_policy_body
from tunnels.simulated.spec import SPEC_PATH, check_request, load_spec, patch_spec

AUTH = {"Authorization": f"Token {NETWORK_ADMIN}"}
SID = "0d5b1bcf-2f4e-4c86-9b1b-8e1a4fb3f7a1"


def test_vendored_spec_is_the_unmodified_copy() -> None:
    digest = hashlib.sha256(SPEC_PATH.read_bytes()).hexdigest()

    assert digest == "e9902fe13f0d7aae3aafcd5f1e3a5fd4ed4f473db3890f2c3e6c74aded660655"


@pytest.mark.slow  # validating 14k lines of spec takes seconds
def test_patched_spec_is_valid_openapi_and_the_original_is_untouched() -> None:
    original = yaml.load(SPEC_PATH.read_bytes(), Loader=yaml.CSafeLoader)
    before = json.dumps(original, sort_keys=True, default=str)

    validate(patch_spec(original))

    assert json.dumps(original, sort_keys=True, default=str) == before


def test_grant_policy_validates_and_needs_the_resource_type_patch() -> None:
    body = grant_policy_body(SID, "ch8i4ug6lnn4g9hqv7m0", "ch8i4ug6lnn4g9hqv7m1", 3389)
    raw = json.dumps(body).encode()

    verdict = check_request(load_spec(), "POST", "/api/policies", headers=AUTH, body=raw)

    assert verdict.ok, verdict.errors


def test_a_wrongly_cased_resource_is_caught_as_a_missing_field() -> None:
    body = grant_policy_body(SID, "ch8i4ug6lnn4g9hqv7m0", "ch8i4ug6lnn4g9hqv7m1", 3389)
    rule = body["rules"][0]
    rule["destination_resource"] = rule.pop("destinationResource")
    del rule["enabled"]

    verdict = check_request(
        load_spec(), "POST", "/api/policies", headers=AUTH, body=json.dumps(body).encode()
    )

    assert verdict.errors == ("rules/0: 'enabled' is a required property",)
    assert not verdict.wrong_type


def test_short_setup_key_expiry_is_accepted() -> None:
    key = {"name": "k", "type": "one-off", "expires_in": 600, "auto_groups": [], "usage_limit": 1}

    verdict = check_request(
        load_spec(), "POST", "/api/setup-keys", headers=AUTH, body=json.dumps(key).encode()
    )

    assert verdict.ok, verdict.errors


def test_requests_without_credentials_do_not_meet_the_spec() -> None:
    assert not check_request(load_spec(), "GET", "/api/policies").ok
