"""Secrets never travel through the TOML or back out in a message: they come from
the environment or from files named relative to the config."""

from __future__ import annotations

from pathlib import Path

import pytest

from broker.config import workspace_password
from tests.broker.config.support import SECRET_ENV, WORKSPACE, load, refused

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

        [tunnel]
        provider = "netbird"

        [netbird]
        base_url = "https://nb.example"
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

        [server]
        data_dir = "state"

        [viewer]
        guacamole_js = "js/guacamole-common.js"
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
    # The database and the other paths too, not the working directory.
    assert settings.data_path == conf.parent / "state"
    assert settings.database_url.endswith(str(conf.parent / "state" / "broker.db"))
    assert Path(settings.viewer.guacamole_js) == conf.parent / "js" / "guacamole-common.js"


def test_env_secret_wins_over_file(write):
    conf = write(
        "[tunnel]\nprovider = 'netbird'\n"
        "[netbird]\nbase_url = 'https://nb.example'\ntoken_file = 'pat'\n"
    )
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
