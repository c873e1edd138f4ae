"""`load_settings` on real files: every mistake an operator can make (an unknown
key, a wrong type, a missing value, a bad ``BROKER_*`` variable) stops startup
with a message naming the key or the variable to fix; the environment overrides
the file; without a file the broker runs on the demo defaults."""

from __future__ import annotations

import stat

import pytest

from broker.config import load_settings
from tests.broker.config.support import NETBIRD_ENV, SECRET_ENV, WORKSPACE, load, refused

# -- unknown keys, types, required values ------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("colour = 'blue'\n", "'colour'"),
        ("[server]\nprot = 8080\n", "'server.prot'"),
        ("[auth]\njwks = 'https://idp.example/jwks'\n", "'auth.jwks'"),
        ("[sever]\nport = 8080\n", "'sever'"),
        ("[auth]\ndev_secret = false\n", "'auth.dev_secret'"),
        (WORKSPACE + "colour = 'blue'\n", "'workspaces[0].colour'"),
    ],
    ids=["top-level", "server", "auth", "misspelt-section", "derived", "workspace"],
)
def test_unknown_key_is_named(write, text, key):
    assert key in refused(write(text))


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[server]\nport = '8080'\n", "'server.port'"),
        ("[server]\nport = 80.5\n", "'server.port'"),
        ("[database]\nauto_migrate = 'yes'\n", "'database.auto_migrate'"),
        ("[server]\ncors_origins = 'https://a.example'\n", "'server.cors_origins'"),
        ("[server]\ncors_origins = ['https://a.example', 3]\n", "'server.cors_origins[1]'"),
        ("server = 8080\n", "'server'"),
        ("[auth]\nleeway_seconds = true\n", "'auth.leeway_seconds'"),
        ("workspaces = {id = 'x'}\n", "'workspaces'"),
        (WORKSPACE + "port = '3389'\n", "'workspaces[0].port'"),
    ],
    ids=[
        "str-for-int",
        "float-for-int",
        "str-for-bool",
        "str-for-list",
        "list-item",
        "scalar-for-section",
        "bool-for-int",
        "table-for-list",
        "workspace-port",
    ],
)
def test_wrong_type_is_named(write, text, key):
    assert key in refused(write(text))


def test_integer_is_accepted_where_a_number_is_expected(write):
    settings = load(write("[netbird]\ntimeout_seconds = 3\n"), NETBIRD_ENV)
    assert settings.netbird.timeout_seconds == 3.0
    assert isinstance(settings.netbird.timeout_seconds, float)


@pytest.mark.parametrize("missing", ["id", "name", "type"])
def test_missing_required_workspace_field_is_named(write, missing):
    fields = {"id": 'id = "ws-a"', "name": 'name = "A"', "type": 'type = "rdp"'}
    body = "\n".join(v for k, v in fields.items() if k != missing)
    text = f"{WORKSPACE}\n[[workspaces]]\n{body}\n"
    assert f"'workspaces[1].{missing}'" in refused(write(text))


def test_missing_file_and_bad_toml_are_config_errors(write, tmp_path):
    assert "not found" in refused(tmp_path / "nowhere.toml")
    message = refused(write("[server\nport = 1\n"))
    assert "not valid TOML" in message


# -- environment overrides ---------------------------------------------------


def test_env_overrides_scalars_and_lists(write):
    conf = write(
        """
        [server]
        port = 8000
        cors_origins = ["https://file.example"]

        [auth]
        require_mfa = false
        """
    )
    env = {
        **NETBIRD_ENV,
        "BROKER_SERVER_PORT": "9000",
        "BROKER_DATABASE_URL": "postgresql+asyncpg://broker@db.internal/broker",
        "BROKER_SERVER_CORS_ORIGINS": "https://a.example, https://b.example,",
        "BROKER_AUTH_REQUIRE_MFA": "true",
        "BROKER_NETBIRD_TIMEOUT_SECONDS": "2.5",
    }
    settings = load(conf, env)
    assert settings.server.port == 9000
    assert settings.database.url == "postgresql+asyncpg://broker@db.internal/broker"
    assert settings.database_url == "postgresql+asyncpg://broker@db.internal/broker"
    assert not settings.is_sqlite
    assert settings.server.cors_origins == ("https://a.example", "https://b.example")
    assert settings.auth.require_mfa is True
    assert settings.netbird.timeout_seconds == 2.5


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("BROKER_SERVER_PORT", "eighty"),
        ("BROKER_AUTH_LEEWAY_SECONDS", "1.5"),
        ("BROKER_DATABASE_ECHO", "maybe"),
    ],
)
def test_bad_env_value_names_the_variable(write, name, value):
    message = refused(write(""), env={**SECRET_ENV, name: value})
    assert name in message


def test_environment_is_not_read_when_env_is_given(write, monkeypatch):
    monkeypatch.setenv("BROKER_SERVER_PORT", "1234")
    settings = load(write(""))
    assert settings.server.port == 8080


# -- demo mode ---------------------------------------------------------------


def test_demo_mode_generates_a_private_secret_once_and_reuses_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = load_settings(None, env={})
    secret_file = tmp_path / "data" / "dev-hs256.secret"
    assert secret_file.exists()
    assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
    assert first.auth.dev_secret is True
    assert len(first.auth.hs256_secret) >= 32
    assert secret_file.read_text().strip() == first.auth.hs256_secret

    second = load_settings(None, env={})
    assert second.auth.hs256_secret == first.auth.hs256_secret
    assert [w.id for w in second.workspaces] == [
        "ws-linux-desktop",
        "ws-windows-server",
        "ws-team-wiki",
    ]


def test_demo_mode_with_an_env_secret_writes_no_file(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    settings = load_settings(None, env=SECRET_ENV)
    assert settings.auth.hs256_secret == SECRET_ENV["BROKER_AUTH_HS256_SECRET"]
    assert not (tmp_path / "data" / "dev-hs256.secret").exists()
