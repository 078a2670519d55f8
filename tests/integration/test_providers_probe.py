"""`triage providers set` and `test` probe the provider for real and store what they found."""

from __future__ import annotations

import socket
import subprocess

import pytest
from sqlalchemy import Engine, select
from sqlalchemy.orm import Session

from tests.integration.conftest import Cli
from tests.support.byok import Abilities, behaving
from tests.support.model_server import FakeModelServer, api_error
from triage.adapters.db.tables import ProviderSetting, UsageEntry, User

KEY = "sk-probe-test-31c7"
USER = "owner@example.test"


@pytest.fixture
def owner(cli: Cli, pg_engine: Engine) -> Cli:
    with Session(pg_engine) as session, session.begin():
        session.add(User(email=USER))  # as `users add` would; saves a CLI start per test
    cli.env["PROBE_KEY"] = KEY
    return cli


def set_provider(
    cli: Cli, provider: str, base_url: str, *extra: str, check: bool = False
) -> subprocess.CompletedProcess[str]:
    return cli(
        "providers",
        "set",
        "--user",
        USER,
        "--provider",
        provider,
        "--base-url",
        base_url,
        "--model",
        "fake-model",
        "--api-key-env",
        "PROBE_KEY",
        *extra,
        check=check,
    )


def the_setting(engine: Engine) -> ProviderSetting:
    with Session(engine, expire_on_commit=False) as session:
        return session.scalars(select(ProviderSetting)).one()


def shapes_tried(setting: ProviderSetting) -> list[str]:
    return [entry["shape"] for entry in setting.probe_report["shapes"]]


@pytest.mark.parametrize(
    ("provider", "abilities", "tried", "capabilities"),
    [
        (
            "openai",
            Abilities(),
            ["json_schema strict"],
            {"structured": "json_schema", "strict": True, "images": True},
        ),
        (
            "openai",
            Abilities(strict=False, sees_images=False),
            ["json_schema strict", "json_schema"],
            {"structured": "json_schema", "strict": False, "images": False},
        ),
        (
            "deepseek",
            Abilities(json_schema=False, image_parts=False),
            ["json_object"],
            {"structured": "json_object", "images": False},
        ),
        (
            "anthropic",
            Abilities(honours_response_format=False),
            ["tool (forced)"],
            {"structured": "tool", "tool_choice": True, "images": True},
        ),
        (
            "ollama",
            Abilities(json_schema=False, tool_choice=False),
            ["json_schema strict", "json_schema", "json_object"],
            {"structured": "json_object", "images": True},
        ),
        (
            "custom",
            Abilities(json_object=False, tools=False),
            ["json_object", "tool (forced)", "tool", "prompt"],
            {"structured": "prompt", "images": True},
        ),
    ],
)
def test_set_probes_each_shape_strictest_first_and_stores_what_worked(
    provider: str,
    abilities: Abilities,
    tried: list[str],
    capabilities: dict[str, object],
    owner: Cli,
    pg_engine: Engine,
    model_server: FakeModelServer,
) -> None:
    model_server.responder = behaving(abilities)

    result = set_provider(owner, provider, model_server.base_url)

    assert result.returncode == 0, result.stderr
    assert "probe: ok" in result.stdout
    setting = the_setting(pg_engine)
    assert shapes_tried(setting) == tried
    assert setting.capabilities.items() >= capabilities.items()
    assert setting.probe_report["status"] == "ok" and setting.probed_at is not None
    assert setting.valid
    # One text call per shape tried, then one image call.
    assert len(model_server.chat_requests) == len(tried) + 1
    assert KEY not in result.stdout + result.stderr
    with Session(pg_engine) as session:  # a probe is not mail: nothing goes to the ledger
        assert session.scalars(select(UsageEntry)).all() == []


def test_test_prints_a_table_and_exits_zero_when_all_settings_work(
    owner: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.responder = behaving(Abilities(image_parts=False))
    set_provider(owner, "openai", model_server.base_url, "--no-probe", check=True)
    assert the_setting(pg_engine).probed_at is None
    assert model_server.chat_requests == []

    result = owner("providers", "test", "--user", USER, check=False)

    assert result.returncode == 0, result.stdout + result.stderr
    header, row = result.stdout.splitlines()[:2]
    assert header.split() == [
        "TASK", "ROLE", "PROVIDER", "MODEL", "KEY", "STATUS", "OUTPUT", "IMAGES", "PROBED",
    ]  # fmt: skip
    assert row.split()[:9] == [
        "classify", "primary", "openai", "fake-model", "...31c7", "ok", "json_schema", "strict",
        "no",
    ]  # fmt: skip
    assert "Image input is not supported" in result.stdout  # why images are off
    assert KEY not in result.stdout + result.stderr
    setting = the_setting(pg_engine)
    assert setting.capabilities["images"] is False and setting.probed_at is not None


def test_an_unreachable_provider_is_saved_unprobed_and_test_fails(
    owner: Cli, pg_engine: Engine
) -> None:
    closed = f"http://127.0.0.1:{free_port()}/v1"

    saved = set_provider(owner, "openai", closed)

    assert saved.returncode == 0, saved.stderr
    assert "not probed (unreachable" in saved.stdout
    setting = the_setting(pg_engine)
    assert setting.probed_at is None and setting.valid
    assert setting.probe_report["status"] == "unreachable"
    assert setting.capabilities["structured"] == "json_schema"  # the preset's default stays

    tested = owner("providers", "test", "--user", USER, check=False)
    assert tested.returncode == 1
    assert "unreachable" in tested.stdout and "Traceback" not in tested.stderr


def test_a_rejected_key_disables_the_setting_and_is_never_printed(
    owner: Cli, pg_engine: Engine
) -> None:
    with FakeModelServer(api_key="sk-the-right-key-0000") as server:
        server.responder = behaving()
        result = set_provider(owner, "openai", server.base_url)
        tested = owner("providers", "test", "--user", USER, check=False)
        calls = len(server.chat_requests)

    assert result.returncode == 1
    assert "key_rejected" in result.stdout and "setting disabled" in result.stdout
    assert tested.returncode == 1 and "disabled" in tested.stdout
    assert calls == 2  # one call per probe: a rejected key stops it at once
    setting = the_setting(pg_engine)
    assert setting.valid is False and "401" in (setting.invalid_reason or "")
    for output in (result.stdout, result.stderr, tested.stdout, tested.stderr):
        assert KEY not in output


def test_an_unknown_model_is_reported_as_such(
    owner: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.responder = lambda _r: api_error(
        404, "The model `fake-model` does not exist or you do not have access to it."
    )

    result = set_provider(owner, "openai", model_server.base_url)

    assert result.returncode == 1
    assert "model_not_found" in result.stdout
    assert len(model_server.chat_requests) == 1
    assert the_setting(pg_engine).probe_report["status"] == "model_not_found"


def test_a_probe_that_passes_enables_a_setting_disabled_earlier(
    owner: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    model_server.responder = behaving()
    set_provider(owner, "openai", model_server.base_url, "--no-probe", check=True)
    with Session(pg_engine) as session, session.begin():
        setting = session.scalars(select(ProviderSetting)).one()
        setting.valid, setting.invalid_reason = False, "401 yesterday"

    result = owner("providers", "test", "--user", USER, check=False)

    assert result.returncode == 0, result.stdout
    assert the_setting(pg_engine).valid is True


def test_set_keeps_fallbacks_in_order_and_rpm(
    owner: Cli, pg_engine: Engine, model_server: FakeModelServer
) -> None:
    set_provider(owner, "openai", model_server.base_url, "--no-probe", check=True)
    set_provider(
        owner, "deepseek", model_server.base_url, "--fallback-of", "openai", "--no-probe",
        "--rpm", "30", check=True,
    )  # fmt: skip
    # Setting the same fallback again replaces it instead of adding a third row.
    set_provider(
        owner, "deepseek", model_server.base_url, "--fallback-of", "openai", "--no-probe",
        "--rpm", "20", check=True,
    )  # fmt: skip
    bad = set_provider(owner, "mistral", model_server.base_url, "--fallback-of", "groq")

    assert bad.returncode == 2 and "no classify provider groq" in bad.stderr
    with Session(pg_engine) as session:
        rows = session.scalars(select(ProviderSetting).order_by(ProviderSetting.position)).all()
        assert [(r.provider, r.position, r.requests_per_minute) for r in rows] == [
            ("openai", 0, None),
            ("deepseek", 1, 20),
        ]
    listed = owner("providers", "list", "--user", USER)
    assert "fallback 1" in listed.stdout and "not probed" in listed.stdout
    owner("providers", "remove", "--user", USER, "--position", "1")
    with Session(pg_engine) as session:
        assert len(session.scalars(select(ProviderSetting)).all()) == 1


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
