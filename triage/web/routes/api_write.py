"""JSON API, actions: each needs the session cookie and its X-CSRF-Token header."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends

from triage.adapters.db.session import transaction
from triage.web.actions.drafts import decide_draft
from triage.web.actions.items import set_item_status
from triage.web.actions.requeue import request_rerun, retry_message
from triage.web.actions.reviews import record_review
from triage.web.actions.settings import replace_key, run_probe, set_budget, visible_setting
from triage.web.auth import ApiWriter
from triage.web.queries.accounts import ModelSetting, users_settings
from triage.web.routes.api_models import (
    ActionItemOut,
    BudgetIn,
    DraftIn,
    DraftOut,
    ItemIn,
    KeyIn,
    Queued,
    RerunIn,
    ReviewIn,
    ReviewOut,
)
from triage.web.sessions import Viewer
from triage.web.state import Console, get_console

router = APIRouter(
    prefix="/api",
    tags=["actions"],
    responses={401: {"description": "no session"}, 403: {"description": "bad CSRF token"}},
)
ConsoleDep = Annotated[Console, Depends(get_console)]


@router.post("/results/{result_id}/reviews", response_model=ReviewOut, status_code=201)
def review(result_id: int, body: ReviewIn, viewer: ApiWriter, console: ConsoleDep) -> ReviewOut:
    with transaction(console.rt.db) as session:
        row = record_review(
            session, viewer, result_id=result_id, to_category=body.to_category, note=body.note
        )
        return ReviewOut.model_validate(row)


@router.post("/messages/{message_id}/draft", response_model=DraftOut)
def draft(message_id: int, body: DraftIn, viewer: ApiWriter, console: ConsoleDep) -> DraftOut:
    with transaction(console.rt.db) as session:
        row = decide_draft(
            session, viewer, message_id=message_id, action=body.action, body=body.body
        )
        session.flush()
        return DraftOut.model_validate(row)


@router.post("/action-items/{item_id}", response_model=ActionItemOut)
def item(item_id: int, body: ItemIn, viewer: ApiWriter, console: ConsoleDep) -> ActionItemOut:
    with transaction(console.rt.db) as session:
        return ActionItemOut.model_validate(
            set_item_status(session, viewer, item_id=item_id, status=body.status)
        )


@router.post("/messages/{message_id}/retry", response_model=Queued, status_code=202)
def retry(message_id: int, viewer: ApiWriter, console: ConsoleDep) -> Queued:
    retry_message(console.rt.db, console.enqueue, viewer, message_id)
    return Queued(message_id=message_id)


@router.post("/messages/{message_id}/rerun", response_model=Queued, status_code=202)
def rerun(message_id: int, body: RerunIn, viewer: ApiWriter, console: ConsoleDep) -> Queued:
    request_id = request_rerun(
        console.rt.db, console.enqueue, viewer, message_id=message_id, setting_id=body.setting_id
    )
    return Queued(message_id=message_id, rerun_id=request_id)


@router.post("/settings/models/{setting_id}/key", response_model=ModelSetting)
def key(setting_id: int, body: KeyIn, viewer: ApiWriter, console: ConsoleDep) -> ModelSetting:
    with transaction(console.rt.db) as session:
        row = replace_key(session, console.rt, viewer, setting_id=setting_id, api_key=body.api_key)
        owner = row.user_id
    return _setting(console, viewer, owner, setting_id)


@router.post("/settings/models/{setting_id}/probe", response_model=ModelSetting)
def probe(setting_id: int, viewer: ApiWriter, console: ConsoleDep) -> ModelSetting:
    run_probe(console.rt, viewer, setting_id=setting_id)
    with console.rt.db() as session:
        owner = visible_setting(session, viewer, setting_id).user_id
    return _setting(console, viewer, owner, setting_id)


@router.post("/users/{user_id}/budget", status_code=204)
def budget(user_id: int, body: BudgetIn, viewer: ApiWriter, console: ConsoleDep) -> None:
    with transaction(console.rt.db) as session:
        set_budget(session, viewer, user_id=user_id, amount=body.monthly_usd or "")


def _setting(console: Console, viewer: Viewer, owner: int, setting_id: int) -> ModelSetting:
    with console.rt.db() as session:
        for user in users_settings(session, viewer, user_id=owner):
            for model in user.models:
                if model.id == setting_id:
                    return model
    raise AssertionError("a setting the viewer just changed is visible to them")
