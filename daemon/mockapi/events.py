"""`POST /_control/...`: the mock posts Meta's account events on demand, signed, to the
webhook its receipts go to (load tests and the demo exercise these paths; tests call them).

- `/_control/template_status` `{"name", "language", "event", "reason"?}`
- `/_control/number_quality` `{"event", "display_phone_number"?, "current_limit"?}`
- `/_control/user_preferences` `{"wa_id", "value": "stop"|"resume", "phone_number_id"?}`
- `/_control/inbound` `{"wa_id", "text", "payload"?, "context"?, "phone_number_id"?}`: a reply
  (a STOP text or a quick-reply payload is an opt-out to the daemon)

Each answers `{"webhook_status": <the daemon's HTTP status>}`."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from daemon.mockapi.inbound import (
    event_document,
    inbound_document,
    number_quality_value,
    template_status_value,
    user_preferences_value,
)
from daemon.mockapi.receipts import ReceiptSender

SENDER_KEY = web.AppKey("mock_event_sender", ReceiptSender)


def install_event_routes(app: web.Application, sender: ReceiptSender) -> None:
    """Add the `/_control/...` event routes."""
    app[SENDER_KEY] = sender
    app.router.add_post("/_control/template_status", _template_status)
    app.router.add_post("/_control/number_quality", _number_quality)
    app.router.add_post("/_control/user_preferences", _user_preferences)
    app.router.add_post("/_control/inbound", _inbound)


async def _fields(request: web.Request, *required: str) -> dict[str, Any]:
    try:
        document = await request.json()
    except ValueError:
        raise web.HTTPBadRequest(text="body must be a JSON object") from None
    if not isinstance(document, dict) or any(not document.get(k) for k in required):
        raise web.HTTPBadRequest(text=f"need {', '.join(required)}")
    return document


async def _post(request: web.Request, field: str, value: dict[str, Any]) -> web.Response:
    sender = request.app[SENDER_KEY]
    if not sender.enabled:
        raise web.HTTPConflict(text="receipts are off: no webhook to post events to")
    status = await sender.post_document(event_document(sender.config.waba_id, field, value))
    return web.json_response({"webhook_status": status})


async def _template_status(request: web.Request) -> web.Response:
    d = await _fields(request, "name", "language", "event")
    value = template_status_value(d["name"], d["language"], d["event"], d.get("reason", "NONE"))
    return await _post(request, "message_template_status_update", value)


async def _number_quality(request: web.Request) -> web.Response:
    d = await _fields(request, "event")
    display = d.get("display_phone_number") or request.app[SENDER_KEY].config.display_phone_number
    value = number_quality_value(display, d["event"], d.get("current_limit", "TIER_10K"))
    return await _post(request, "phone_number_quality_update", value)


async def _user_preferences(request: web.Request) -> web.Response:
    d = await _fields(request, "wa_id", "value")
    config = request.app[SENDER_KEY].config
    value = user_preferences_value(
        d.get("phone_number_id", "106540352242922"),
        config.display_phone_number,
        d["wa_id"],
        d["value"],
    )
    return await _post(request, "user_preferences", value)


async def _inbound(request: web.Request) -> web.Response:
    d = await _fields(request, "wa_id", "text")
    sender = request.app[SENDER_KEY]
    if not sender.enabled:
        raise web.HTTPConflict(text="receipts are off: no webhook to post events to")
    document = inbound_document(
        sender.config.waba_id,
        d.get("phone_number_id", "106540352242922"),
        sender.config.display_phone_number,
        d["wa_id"],
        d["text"],
        d.get("payload"),
        d.get("context"),
    )
    return web.json_response({"webhook_status": await sender.post_document(document)})
