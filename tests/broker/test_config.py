"""`load_settings` on real files: every mistake an operator can make stops startup
with a message naming the key (or the variable) to fix, and secrets never travel
through the TOML or back out in a message."""

from __future__ import annotations

import dataclasses
import re
import stat
import textwrap
import typing
from pathlib import Path

import pytest

from broker.config import (
    SECRET_KEYS,
    AuthSettings,
    NetBirdConfig,
    Settings,
    WorkspaceConfig,
    load_settings,
    workspace_password,
)
from broker.core.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
SECRET_ENV = {"BROKER_AUTH_HS256_SECRET": "env-secret-0123456789"}

WORKSPACE = """
[[workspaces]]
id = "ws-one"
name = "One"
type = "rdp"
"""


@pytest.fixture
def write(tmp_path: Path):
    """Write ``text`` as a config file in a directory of its own and return its path."""

    def write(text: str, name: str = "broker.toml") -> Path:
        path = tmp_path / "conf" / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(textwrap.dedent(text))
        return path

    return write


def load(path: Path, env: dict[str, str] | None = None) -> Settings:
    return load_settings(path, env=SECRET_ENV if env is None else env)


def refused(path: Path, env: dict[str, str] | None = None) -> str:
    with pytest.raises(ConfigError) as info:
        load(path, env)
    return str(info.value)


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
    settings = load(write("[netbird]\ntimeout_seconds = 3\n"))
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


# -- secrets -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "key"),
    [
        ("[auth]\nhs256_secret = 'hunter2-inline-value'\n", "auth.hs256_secret"),
        ("[netbird]\ntoken = 'hunter2-inline-value'\n", "netbird.token"),
        (WORKSPACE + "password = 'hunter2-inline-value'\n", "workspaces[0].password"),
    ],
    ids=["hs256", "netbird", "workspace-password"],
)
def test_secret_written_in_toml_is_refused_without_echoing_it(write, text, key):
    message = refused(write(text))
    assert key in message
    assert "environment" in message
    assert "hunter2" not in message


def test_hs256_secret_from_env(write):
    settings = load(write(WORKSPACE), env={"BROKER_AUTH_HS256_SECRET": "from-env-secret"})
    assert settings.auth.hs256_secret == "from-env-secret"


def test_secrets_from_files_relative_to_the_config(write, tmp_path, monkeypatch):
    conf = write(
        """
        [auth]
        hs256_secret_file = "secrets/jwt"

        [netbird]
        token_file = "secrets/pat"
        """
    )
    (conf.parent / "secrets").mkdir()
    (conf.parent / "secrets" / "jwt").write_text("file-jwt-secret\n")
    (conf.parent / "secrets" / "pat").write_text("  nbp_file_token  \n")
    monkeypatch.chdir(tmp_path)  # not the config's directory
    settings = load(conf, env={})
    assert settings.auth.hs256_secret == "file-jwt-secret"
    assert settings.netbird.token == "nbp_file_token"


def test_every_file_path_is_relative_to_the_config(write, tmp_path, monkeypatch):
    """Not only the secret files: a PEM key or a workspace password file named
    relative to the config is found whatever directory the broker starts in."""
    conf = write(
        WORKSPACE
        + """
        password_file = "secrets/rdp-password"

        [auth]
        public_key_file = "keys/idp.pem"
        """
    )
    (conf.parent / "secrets").mkdir()
    (conf.parent / "secrets" / "rdp-password").write_text("rdp-pass\n")
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    settings = load(conf, env={})
    assert Path(settings.auth.public_key_file) == conf.parent / "keys" / "idp.pem"
    assert workspace_password(settings.workspaces[0], env={}) == "rdp-pass"


def test_env_secret_wins_over_file(write):
    conf = write("[netbird]\ntoken_file = 'pat'\n")
    (conf.parent / "pat").write_text("from-file")
    settings = load(conf, env={**SECRET_ENV, "BROKER_NETBIRD_TOKEN": "from-env"})
    assert settings.netbird.token == "from-env"


def test_unreadable_secret_file_names_the_key(write):
    message = refused(write("[auth]\nhs256_secret_file = 'missing.secret'\n"), env={})
    assert "'auth.hs256_secret_file'" in message


def test_secrets_do_not_show_in_repr(write):
    conf = write("")
    settings = load(
        conf, env={"BROKER_AUTH_HS256_SECRET": "s3cr3t-jwt", "BROKER_NETBIRD_TOKEN": "s3cr3t-pat"}
    )
    assert settings.auth.hs256_secret == "s3cr3t-jwt"
    assert "s3cr3t" not in repr(settings)


def test_no_key_configured_outside_demo_is_refused(write):
    message = refused(write(WORKSPACE), env={})
    assert "auth" in message
    assert "BROKER_AUTH_HS256_SECRET" in message


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
        **SECRET_ENV,
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


# -- config.example.toml -----------------------------------------------------

EXAMPLE = REPO / "config.example.toml"
# Filled by the broker itself, never a setting an operator writes.
DERIVED = {("auth", "dev_secret")}


def _example_text() -> str:
    if not EXAMPLE.exists():
        pytest.skip("config.example.toml is not written yet")
    return EXAMPLE.read_text()


def _sections() -> dict[str, type]:
    hints = typing.get_type_hints(Settings)
    out: dict[str, type] = {}
    for f in dataclasses.fields(Settings):
        tp = hints[f.name]
        if typing.get_origin(tp) is tuple:
            tp = typing.get_args(tp)[0]
        out[f.name] = tp
    return out


def _block(text: str, section: str) -> str:
    """The lines of ``[section]`` (or the commented ``# [[workspaces]]`` sample)."""
    header = re.compile(rf"^#?\s*\[\[?{re.escape(section)}\]\]?\s*$", re.M)
    match = header.search(text)
    assert match, f"config.example.toml has no [{section}] section"
    rest = text[match.end() :]
    following = re.search(r"^\[", rest, re.M)
    return rest[: following.start()] if following else rest


def test_example_config_loads(tmp_path, monkeypatch):
    _example_text()
    monkeypatch.chdir(tmp_path)
    settings = load_settings(EXAMPLE, env=SECRET_ENV)
    assert settings.server.port == 8080


def test_example_config_shows_the_real_defaults(tmp_path, monkeypatch):
    """The file says it lists every setting with its default: loading it must
    give exactly what an empty file gives."""
    _example_text()
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(EXAMPLE, env=SECRET_ENV) == load_settings(empty, env=SECRET_ENV)


def test_example_config_documents_every_setting():
    text = _example_text()
    missing = []
    for section, cls in _sections().items():
        block = _block(text, section)
        for f in dataclasses.fields(cls):
            if f.name in SECRET_KEYS or (section, f.name) in DERIVED:
                continue
            if not re.search(rf"^#?\s*{re.escape(f.name)}\s*=", block, re.M):
                missing.append(f"{section}.{f.name}")
    assert not missing, f"config.example.toml does not document {missing}"


def test_example_config_names_secrets_only_as_environment_variables():
    text = _example_text()
    secret_fields = {
        ("auth", f.name) for f in dataclasses.fields(AuthSettings) if f.name in SECRET_KEYS
    } | {("netbird", f.name) for f in dataclasses.fields(NetBirdConfig) if f.name in SECRET_KEYS}
    assert secret_fields == {("auth", "hs256_secret"), ("netbird", "token")}
    for section, name in secret_fields:
        variable = f"BROKER_{section}_{name}".upper()
        mentions = [line for line in text.splitlines() if variable in line]
        assert mentions, f"config.example.toml does not name {variable}"
        assert all(
            line.lstrip().startswith("#") or "#" in line.split(variable)[0] for line in mentions
        ), f"{variable} must appear in comments only"
        assigned = re.search(rf"^\s*{name}\s*=", _block(text, section), re.M)
        assert assigned is None, f"{section}.{name} must not be assignable in the example"
    workspace_secrets = {f.name for f in dataclasses.fields(WorkspaceConfig)} & SECRET_KEYS
    assert not workspace_secrets


def test_environment_is_not_read_when_env_is_given(write, monkeypatch):
    monkeypatch.setenv("BROKER_SERVER_PORT", "1234")
    settings = load(write(""))
    assert settings.server.port == 8080
