"""Settings forms: replace a model key (write-only), run the probe again, set a budget."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Form
from fastapi.responses import Response

from triage.adapters.db.session import transaction
from triage.web.actions.settings import replace_key, run_probe, set_budget
from triage.web.auth import FormViewer
from triage.web.render import back_to
from triage.web.state import Console, get_console

router = APIRouter(include_in_schema=False)
ConsoleDep = Annotated[Console, Depends(get_console)]


@router.post("/settings/models/{setting_id}/key")
def model_key(
    setting_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    api_key: Annotated[str, Form(max_length=8192)],
) -> Response:
    with transaction(console.rt.db) as session:
        replace_key(session, console.rt, viewer, setting_id=setting_id, api_key=api_key)
    return back_to(None, "/accounts#settings")


@router.post("/settings/models/{setting_id}/probe")
def model_probe(setting_id: int, viewer: FormViewer, console: ConsoleDep) -> Response:
    run_probe(console.rt, viewer, setting_id=setting_id)
    return back_to(None, "/accounts#settings")


@router.post("/users/{user_id}/budget")
def user_budget(
    user_id: int,
    viewer: FormViewer,
    console: ConsoleDep,
    monthly_usd: Annotated[str, Form(max_length=32)] = "",
) -> Response:
    with transaction(console.rt.db) as session:
        set_budget(session, viewer, user_id=user_id, amount=monthly_usd)
    return back_to(None, "/accounts#settings")
