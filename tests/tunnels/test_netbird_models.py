"""Lenient parsing of NetBird's answers, policy naming, and the settings' guards."""

from __future__ import annotations

import pytest

from tunnels.netbird.models import (
    CurrentUser,
    Group,
    GroupRef,
    Peer,
    Policy,
    parse_all,
    policy_name,
    session_of,
)
from tunnels.netbird.settings import NetBirdSettings
from tunnels.probe import ProbeSettings, probe_tcp

SID = "0d5b1bcf-2f4e-4c86-9b1b-8e1a4fb3f7a1"


def test_policy_names_round_trip_and_foreign_names_are_ignored() -> None:
    assert session_of(policy_name(SID)) == SID
    assert session_of("broker:not-a-uuid") is None
    assert session_of("Default") is None
    assert session_of("broker:" + SID.upper()) is None


def test_null_lists_unknown_fields_and_missing_booleans() -> None:
    raw = {
        "id": "p1",
        "name": "broker:x",
        "future_field": {"anything": 1},
        "source_posture_checks": None,
        "rules": [
            {"sources": None, "destinations": None, "ports": None, "action": "accept"},
            "not-a-rule",
        ],
    }

    policy = Policy.parse(raw)

    assert policy is not None
    assert policy.enabled is False
    [rule] = policy.rules
    assert (rule.sources, rule.destinations, rule.ports, rule.enabled) == ((), (), (), False)
    assert rule.destination_peer is None


def test_group_refs_are_objects_or_bare_ids() -> None:
    assert GroupRef.parse({"id": "g1", "name": "All"}) == GroupRef("g1", "All")
    assert GroupRef.parse("g2") == GroupRef("g2")
    assert GroupRef.parse({"name": "no id"}) is None


def test_list_answers_tolerate_null_and_junk() -> None:
    assert parse_all(None, Peer.parse) == []
    assert parse_all([{"id": "a", "ip": "127.64.0.1"}, {"name": "no id"}, 3], Peer.parse) == [
        Peer("a", "", "127.64.0.1", "", False)
    ]


def test_group_peer_count_falls_back_to_the_peer_list() -> None:
    assert Group.parse({"id": "g", "name": "gw", "peers": [{"id": "p"}]}) == Group("g", "gw", 1)


def test_current_user_without_id_is_none() -> None:
    assert CurrentUser.parse({"role": "admin"}) is None


def test_settings_refuse_unusable_values_without_echoing_the_token() -> None:
    token = "nbp_has whitespace"
    with pytest.raises(ValueError) as info:
        NetBirdSettings(base_url="https://api.netbird.io", token=token)
    assert token not in str(info.value)

    with pytest.raises(ValueError, match="http"):
        NetBirdSettings(base_url="api.netbird.io", token="nbp_x")
    with pytest.raises(ValueError, match="positive"):
        NetBirdSettings(base_url="https://api.netbird.io", token="nbp_x", timeout_seconds=0)


def test_settings_defaults() -> None:
    settings = NetBirdSettings(base_url="https://api.netbird.io", token="nbp_x")

    assert settings.gateway_group == "gateways"
    assert settings.retry.max_retries == 4
    assert settings.probe == ProbeSettings(10, 1.0, 2.0)


async def test_probe_reports_refusal_after_every_attempt() -> None:
    result = await probe_tcp("127.64.0.250", 9, ProbeSettings(2, 0.0, 0.5))

    assert not result.ok
    assert result.attempts == 2
    assert "refused" in result.last_error.lower()
