"""Checks of single sections: workspaces, the tunnel provider and its settings, and
the values the loader parses (guacd endpoints, trusted proxy networks)."""

from __future__ import annotations

import ipaddress

import pytest

from broker.config import HostPort
from tests.broker.config.support import NETBIRD_ENV, SECRET_ENV, WORKSPACE, load, refused

# -- workspaces and providers ------------------------------------------------


@pytest.mark.parametrize(
    ("extra", "key"),
    [
        ('type = "telnet"', "'workspaces[1].type'"),
        ('type = "rdp"\nprotocol = "telnet"', "'workspaces[1].protocol'"),
        ('type = "rdp"\nport = 70000', "'workspaces[1].port'"),
        ('type = "rdp"\nport = -1', "'workspaces[1].port'"),
    ],
    ids=["type", "protocol", "port-high", "port-negative"],
)
def test_invalid_workspace_value_is_named(write, extra, key):
    text = f'{WORKSPACE}\n[[workspaces]]\nid = "ws-two"\nname = "Two"\n{extra}\n'
    assert key in refused(write(text))


@pytest.mark.parametrize("bad_id", ["ws one", "ws/one", "", "x" * 65, "ws-ｏne"])
def test_invalid_workspace_id_is_named(write, bad_id):
    text = f'[[workspaces]]\nid = "{bad_id}"\nname = "One"\ntype = "rdp"\n'
    assert "'workspaces[0].id'" in refused(write(text))


def test_duplicate_workspace_id_is_named(write):
    message = refused(write(WORKSPACE + WORKSPACE))
    assert "'workspaces[1].id'" in message
    assert "duplicate" in message


def test_workspace_defaults_follow_the_type(write):
    text = """
    [[workspaces]]
    id = "ws-linux"
    name = "Linux"
    type = "linux"

    [[workspaces]]
    id = "ws-ssh"
    name = "Shell"
    type = "ssh"
    allowed_roles = ["ops"]
    """
    linux, shell = load(write(text)).workspaces
    assert (linux.protocol, linux.port, linux.allowed_roles) == ("vnc", 5900, ())
    assert (shell.protocol, shell.port, shell.allowed_roles) == ("ssh", 22, ("ops",))


def test_unknown_tunnel_provider_is_named(write):
    assert "'tunnel.provider'" in refused(write("[tunnel]\nprovider = 'wireguard'\n"))


def test_netbird_provider_needs_base_url(write):
    conf = write("[tunnel]\nprovider = 'netbird'\n")
    assert "'netbird.base_url'" in refused(conf, env={**SECRET_ENV, "BROKER_NETBIRD_TOKEN": "t"})


def test_netbird_provider_needs_token(write):
    conf = write("[tunnel]\nprovider = 'netbird'\n[netbird]\nbase_url = 'https://nb.example'\n")
    message = refused(conf)
    assert "BROKER_NETBIRD_TOKEN" in message
    assert "'netbird.token_file'" in message


def test_netbird_provider_with_url_and_token_loads(write):
    conf = write("[tunnel]\nprovider = 'netbird'\n[netbird]\nbase_url = 'https://nb.example'\n")
    settings = load(conf, env={**SECRET_ENV, "BROKER_NETBIRD_TOKEN": "nbp_x"})
    assert settings.tunnel.provider == "netbird"
    assert settings.netbird.token == "nbp_x"


def test_netbird_settings_are_built_for_the_netbird_provider(write):
    conf = write("[netbird]\ngateway_group = 'edge'\nmax_retries = 2\n")
    netbird = load(conf, NETBIRD_ENV).netbird
    assert netbird is not None
    assert (netbird.base_url, netbird.token) == ("https://nb.example", "nbp_x")
    assert (netbird.gateway_group, netbird.max_retries) == ("edge", 2)
    # The documented defaults (config.example.toml), not the provider's own.
    assert (netbird.timeout_seconds, netbird.max_retry_seconds) == (10.0, 20.0)


def test_netbird_settings_are_none_for_the_direct_provider(write):
    conf = write("[netbird]\nbase_url = 'https://nb.example'\n")
    assert load(conf, {**SECRET_ENV, "BROKER_NETBIRD_TOKEN": "nbp_x"}).netbird is None


def test_unusable_netbird_value_is_refused_at_load_without_echoing_the_token(write):
    message = refused(write(""), {**NETBIRD_ENV, "BROKER_NETBIRD_BASE_URL": "nb.example"})
    assert "'netbird'" in message and "http" in message
    assert "nbp_x" not in message


# -- values parsed at load -------------------------------------------------------


def test_guacd_endpoints_are_parsed(write):
    conf = write("[guacd]\nendpoints = ['guacd-1.internal:4822', '[fd00::5]:4823']\n")
    assert load(conf).guacd.endpoints == (
        HostPort("guacd-1.internal", 4822),
        HostPort("fd00::5", 4823),
    )
    assert load(write("")).guacd.endpoints == (HostPort("127.0.0.1", 4822),)


@pytest.mark.parametrize("bad", ["guacd.internal", "guacd:port", ":4822", "guacd:70000"])
def test_bad_guacd_endpoint_is_named_at_load(write, bad):
    conf = write(f"[guacd]\nendpoints = ['127.0.0.1:4822', '{bad}']\n")
    message = refused(conf)
    assert "'guacd.endpoints[1]' must be host:port" in message
    assert repr(bad) in message


def test_bad_guacd_endpoint_from_the_environment_is_named(write):
    env = {**SECRET_ENV, "BROKER_GUACD_ENDPOINTS": "127.0.0.1:4822,guacd"}
    assert "'guacd.endpoints[1]'" in refused(write(""), env)


def test_guacd_endpoint_must_be_a_string(write):
    assert "'guacd.endpoints[0]'" in refused(write("[guacd]\nendpoints = [4822]\n"))


def test_trusted_proxies_are_parsed_into_networks(write):
    conf = write("[server]\ntrusted_proxies = ['10.0.0.0/8', '192.0.2.7', 'fd00::/8']\n")
    assert load(conf).server.trusted_proxies == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("192.0.2.7/32"),
        ipaddress.ip_network("fd00::/8"),
    )
    env = {**SECRET_ENV, "BROKER_SERVER_TRUSTED_PROXIES": "127.0.0.0/8, 10.1.2.3/16"}
    assert load(write(""), env).server.trusted_proxies == (
        ipaddress.ip_network("127.0.0.0/8"),
        ipaddress.ip_network("10.1.0.0/16"),
    )


@pytest.mark.parametrize("bad", ["10.0.0.0/33", "proxy.internal", "10.0.0.0/8/8"])
def test_bad_trusted_proxy_is_named_at_load(write, bad):
    conf = write(f"[server]\ntrusted_proxies = ['127.0.0.1', '{bad}']\n")
    message = refused(conf)
    assert "'server.trusted_proxies[1]'" in message
    assert repr(bad) in message


def test_bad_trusted_proxy_from_the_environment_is_named(write):
    env = {**SECRET_ENV, "BROKER_SERVER_TRUSTED_PROXIES": "10.0.0.0/8,nobody"}
    assert "'server.trusted_proxies[1]'" in refused(write(""), env)


# -- database ----------------------------------------------------------------------


def test_database_max_overflow_is_read_from_the_file_and_the_environment(write):
    assert load(write("")).database.max_overflow == 10
    assert load(write("[database]\nmax_overflow = 0\n")).database.max_overflow == 0
    env = {**SECRET_ENV, "BROKER_DATABASE_MAX_OVERFLOW": "4"}
    assert load(write(""), env).database.max_overflow == 4


def test_negative_database_max_overflow_is_refused(write):
    message = refused(write("[database]\nmax_overflow = -1\n"))
    assert "'database.max_overflow' must be 0 or more" in message


# -- server ------------------------------------------------------------------------


def test_event_loop_is_uvloop_unless_asyncio_is_asked_for(write):
    assert load(write("")).server.event_loop == "uvloop"
    assert load(write('[server]\nevent_loop = "asyncio"\n')).server.event_loop == "asyncio"
    env = {**SECRET_ENV, "BROKER_SERVER_EVENT_LOOP": "asyncio"}
    assert load(write(""), env).server.event_loop == "asyncio"


def test_unknown_event_loop_is_refused(write):
    message = refused(write('[server]\nevent_loop = "trio"\n'))
    assert "'server.event_loop' must be one of 'uvloop', 'asyncio'" in message
