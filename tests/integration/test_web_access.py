"""Console access rules on a real `triage web` process: sessions, CSRF, and one user's walls."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.routing import APIRoute
from sqlalchemy import func, select

from tests.e2e.console import (
    ConsoleServer,
    console_env,
    empty_database,
    running_console,
    runtime_of,
    sign_in,
)
from tests.e2e.world import World, seed_world
from triage.adapters.db.tables import (
    ActionItem,
    Draft,
    Message,
    ProviderSetting,
    RerunRequest,
    Review,
    User,
)
from triage.runtime import Runtime
from triage.web.app import ROUTERS

pytestmark = pytest.mark.integration
PUBLIC = {("GET", "/signin"), ("POST", "/signin"), ("POST", "/api/signin")}


@dataclass(frozen=True)
class Route:
    method: str
    path: str
    form: dict[str, str] | None = None
    json: dict[str, Any] | None = None
    template: str = ""


def routes_for(world: World, who: str) -> list[Route]:
    """Every non-public route, with IDs of `who`'s rows and a plausible body."""
    p = getattr(world, who)
    ids = {
        "message_id": p.message_ids[0],
        "result_id": p.result_ids[1],
        "item_id": p.item_ids[0],
        "attachment_id": p.image_id,
        "setting_id": p.setting_id,
        "user_id": p.id,
    }
    table = [
        Route("GET", "/"),
        Route("GET", "/review"),
        Route("GET", "/messages"),
        Route("GET", "/messages/{message_id}"),
        Route("GET", "/messages/{message_id}/body"),
        Route("GET", "/attachments/{attachment_id}/image"),
        Route("GET", "/failures"),
        Route("GET", "/accounts"),
        Route("GET", "/stats"),
        Route("GET", "/stats/reviewed.jsonl"),
        Route("POST", "/signout", form={}),
        Route(
            "POST",
            "/results/{result_id}/review",
            form={"decision": "correct", "to_category": "personal"},
        ),
        Route("POST", "/messages/{message_id}/draft", form={"action": "approve", "body": "pwned"}),
        Route("POST", "/items/{item_id}", form={"status": "done"}),
        Route("POST", "/messages/{message_id}/retry", form={}),
        Route("POST", "/messages/{message_id}/rerun", form={"setting_id": str(p.setting_id)}),
        Route("POST", "/settings/models/{setting_id}/key", form={"api_key": "sk-evil-key-0000"}),
        Route("POST", "/settings/models/{setting_id}/probe", form={}),
        Route("POST", "/users/{user_id}/budget", form={"monthly_usd": "0.01"}),
        Route("GET", "/api/me"),
        Route("GET", "/api/openapi.json"),
        Route("GET", "/api/messages"),
        Route("GET", "/api/messages/{message_id}"),
        Route("GET", "/api/review-queue"),
        Route("GET", "/api/failures"),
        Route("GET", "/api/accounts"),
        Route("GET", "/api/users"),
        Route("GET", "/api/stats"),
        Route("GET", "/api/reviewed.jsonl"),
        Route("POST", "/api/signout", json={}),
        Route("POST", "/api/results/{result_id}/reviews", json={"to_category": "personal"}),
        Route("POST", "/api/messages/{message_id}/draft", json={"action": "approve", "body": "x"}),
        Route("POST", "/api/action-items/{item_id}", json={"status": "done"}),
        Route("POST", "/api/messages/{message_id}/retry", json={}),
        Route("POST", "/api/messages/{message_id}/rerun", json={"setting_id": p.setting_id}),
        Route("POST", "/api/settings/models/{setting_id}/key", json={"api_key": "sk-evil-0000"}),
        Route("POST", "/api/settings/models/{setting_id}/probe", json={}),
        Route("POST", "/api/users/{user_id}/budget", json={"monthly_usd": "0.01"}),
    ]
    return [Route(r.method, r.path.format(**ids), r.form, r.json, r.path) for r in table]


@pytest.fixture(scope="module")
def env(
    migrated_pg: str, redis_url: str, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    empty_database(migrated_pg)
    return console_env(migrated_pg, redis_url, tmp_path_factory.mktemp("console"))


@pytest.fixture(scope="module")
def rt(env: dict[str, str]) -> Runtime:
    return runtime_of(env)


@pytest.fixture(scope="module")
def world(rt: Runtime) -> World:
    return seed_world(rt)


@pytest.fixture(scope="module")
def server(
    env: dict[str, str], world: World, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ConsoleServer]:
    with running_console(env, tmp_path_factory.mktemp("log") / "web.log") as running:
        yield running


def test_the_route_table_covers_every_route_of_the_app(world: World) -> None:
    served = {
        (method, route.path)
        for router in ROUTERS
        for route in router.routes
        if isinstance(route, APIRoute)
        for method in route.methods
    } | {("GET", "/api/openapi.json")}
    assert served - PUBLIC == {(r.method, r.template) for r in routes_for(world, "bob")}


def test_without_a_session_pages_redirect_to_sign_in_and_the_api_says_401(
    server: ConsoleServer, world: World
) -> None:
    with server.client() as anonymous:
        for route in routes_for(world, "alice"):
            response = anonymous.request(route.method, route.path, data=route.form, json=route.json)
            if route.path.startswith("/api/"):
                assert response.status_code == 401, (route, response.text)
            else:
                assert response.status_code == 303, (route, response.text)
                assert response.headers["location"].startswith("/signin?next="), route


def test_a_form_or_api_write_without_its_csrf_token_is_refused(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    before = _state(rt)
    with server.client() as alice:
        sign_in(alice, world.alice.email, world.alice.password)
        for route in routes_for(world, "alice"):
            if route.method != "POST":
                continue
            if route.form is not None:
                missing = alice.post(route.path, data=route.form)
                wrong = alice.post(route.path, data={**route.form, "csrf_token": "0" * 64})
            else:
                missing = alice.post(route.path, json=route.json)
                wrong = alice.post(route.path, json=route.json, headers={"X-CSRF-Token": "0" * 64})
            assert missing.status_code == 403, (route, missing.text)
            assert wrong.status_code == 403, (route, wrong.text)
        assert alice.get("/api/me").status_code == 200  # sign-out without a token did nothing
    assert _state(rt) == before


def test_alice_cannot_read_or_change_bobs_messages_settings_or_drafts(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    before = _state(rt)
    with server.client() as alice:
        csrf = sign_in(alice, world.alice.email, world.alice.password)
        for route in routes_for(world, "bob"):
            if "{" not in route.template:
                continue
            if route.form is not None:
                response = alice.post(route.path, data={**route.form, "csrf_token": csrf})
            elif route.json is not None:
                response = alice.post(route.path, json=route.json, headers={"X-CSRF-Token": csrf})
            else:
                response = alice.get(route.path)
            assert response.status_code == 404, (route, response.status_code, response.text[:300])
            assert "bob" not in response.text.lower(), route
    assert _state(rt) == before


def test_lists_show_a_user_only_their_own_mail_even_when_asking_for_another(
    server: ConsoleServer, world: World
) -> None:
    bob = world.bob
    with server.client() as alice:
        sign_in(alice, world.alice.email, world.alice.password)
        for path in (
            "/api/messages",
            f"/api/messages?user={bob.id}",
            f"/api/messages?account={bob.account_id}",
            "/api/review-queue",
            f"/api/review-queue?user={bob.id}",
            "/api/failures",
            "/api/accounts",
            "/api/users",
            f"/api/stats?user={bob.id}",
            "/api/reviewed.jsonl",
            "/review",
            f"/review?user={bob.id}",
            "/messages",
            f"/messages?user={bob.id}",
            "/failures",
            "/accounts",
            "/stats",
            f"/stats?user={bob.id}",
        ):
            response = alice.get(path)
            assert response.status_code == 200, (path, response.text)
            assert "bob" not in response.text.lower(), path
        listed = alice.get("/api/messages").json()["rows"]
        assert {row["id"] for row in listed} == set(world.alice.message_ids)


def test_an_admin_sees_everyone(server: ConsoleServer, world: World) -> None:
    with server.client() as admin:
        sign_in(admin, world.admin.email, world.admin.password)
        listed = {row["id"] for row in admin.get("/api/messages").json()["rows"]}
        assert listed == set(world.alice.message_ids) | set(world.bob.message_ids)
        only_bob = admin.get(f"/api/messages?user={world.bob.id}").json()["rows"]
        assert {row["id"] for row in only_bob} == set(world.bob.message_ids)
        page = admin.get(f"/messages/{world.bob.message_ids[0]}")
        assert page.status_code == 200 and "bob invoice" in page.text


def test_sign_in_is_throttled_after_repeated_failures(
    server: ConsoleServer, world: World, rt: Runtime
) -> None:
    from triage.adapters.db.session import transaction
    from triage.adapters.passwords import hash_password

    with transaction(rt.db) as session:
        session.add(User(email="carol@example.test", password_hash=hash_password("carol-pass")))
    with server.client() as client:
        for _ in range(5):
            wrong = client.post(
                "/api/signin", json={"email": "carol@example.test", "password": "no"}
            )
            assert wrong.status_code == 401
        blocked = client.post(
            "/api/signin", json={"email": "carol@example.test", "password": "carol-pass"}
        )
        assert blocked.status_code == 429
        assert int(blocked.headers["retry-after"]) > 0
        assert "triage_session" not in blocked.headers.get("set-cookie", "")
        # Others are not locked out by Carol's attacker.
        assert (
            client.post(
                "/api/signin", json={"email": world.alice.email, "password": world.alice.password}
            ).status_code
            == 200
        )


def test_sign_out_ends_the_session_for_good(server: ConsoleServer, world: World) -> None:
    with server.client() as alice:
        csrf = sign_in(alice, world.alice.email, world.alice.password)
        cookie = alice.cookies["triage_session"]
        out = alice.post("/signout", data={"csrf_token": csrf})
        assert out.status_code == 303 and out.headers["location"] == "/signin"
    with server.client() as replay:
        replay.cookies.set("triage_session", cookie)
        assert replay.get("/review").status_code == 303
        assert replay.get("/api/me").status_code == 401


def test_session_cookie_flags_and_security_headers(server: ConsoleServer, world: World) -> None:
    with server.client() as client:
        form = client.get("/signin")
        assert "default-src 'none'" in form.headers["content-security-policy"]
        assert form.headers["x-frame-options"] == "DENY"
        signed = client.post(
            "/api/signin", json={"email": world.alice.email, "password": world.alice.password}
        )
        cookie = signed.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie and "path=/" in cookie
        page = client.get("/review")
        assert page.headers["cache-control"] == "no-store"
        csp = page.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp
        body = client.get(f"/messages/{world.alice.message_ids[0]}/body")
        assert body.headers["content-security-policy"].startswith(
            "default-src 'none'; img-src data:"
        )
        assert "sandbox" in body.headers["content-security-policy"]


def _state(rt: Runtime) -> tuple[Any, ...]:
    """Everything a refused request must leave alone."""
    with rt.db() as session:
        return (
            session.scalar(select(func.count()).select_from(Review)),
            session.scalar(select(func.count()).select_from(RerunRequest)),
            tuple(
                session.execute(
                    select(Draft.id, Draft.status, Draft.edited_body).order_by(Draft.id)
                )
            ),
            tuple(
                session.execute(select(ActionItem.id, ActionItem.status).order_by(ActionItem.id))
            ),
            tuple(session.execute(select(Message.id, Message.status).order_by(Message.id))),
            tuple(
                session.execute(
                    select(ProviderSetting.id, ProviderSetting.api_key_enc).order_by(
                        ProviderSetting.id
                    )
                )
            ),
            tuple(session.execute(select(User.id, User.monthly_budget_usd).order_by(User.id))),
        )
