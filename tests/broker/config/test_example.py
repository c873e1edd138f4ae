"""``config.example.toml`` lists every setting with its real default, loads as
is, and names secrets only as environment variables."""

from __future__ import annotations

import dataclasses
import re

from broker.config import (
    SECRET_KEYS,
    SECTIONS,
    AuthSettings,
    NetBirdSection,
    WorkspaceConfig,
    load_settings,
)
from tests.broker.config.support import REPO, SECRET_ENV

EXAMPLE = REPO / "config.example.toml"
# Filled by the broker itself, never a setting an operator writes.
DERIVED = {("auth", "dev_secret")}


def _example_text() -> str:
    return EXAMPLE.read_text()


def _sections() -> dict[str, type]:
    """Each TOML section and the type its keys are read into."""
    return {**SECTIONS, "workspaces": WorkspaceConfig}


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
    example = tmp_path / "example.toml"  # relative paths resolve from the file's directory
    example.write_text(_example_text())
    monkeypatch.chdir(tmp_path)
    empty = tmp_path / "empty.toml"
    empty.write_text("")
    assert load_settings(example, env=SECRET_ENV) == load_settings(empty, env=SECRET_ENV)


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
    } | {("netbird", f.name) for f in dataclasses.fields(NetBirdSection) if f.name in SECRET_KEYS}
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
