"""What the mock's tests send: its default token, a sending number, a typical template body."""

from __future__ import annotations

from typing import Any

TOKEN = "test-token"
PHONE_ID = "106540352242922"

TYPICAL: dict[str, Any] = {
    "messaging_product": "whatsapp",
    "recipient_type": "individual",
    "to": "16505551234",
    "type": "template",
    "biz_opaque_callback_data": "c:42:1",
    "template": {
        "name": "spring_sale",
        "language": {"code": "en_US"},
        "components": [{"type": "body", "parameters": [{"type": "text", "text": "Anna"}]}],
    },
}
