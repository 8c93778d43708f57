"""Validation of template send requests against the official schema (packaged JSON).

The schema document (``schema/template_message.json``) is extracted from Meta's OpenAPI spec.
The validator is built once with every ``$ref`` inlined, because resolving references on each
request costs more than the validation itself. A hand-written fast path recognises the common
shape (text body parameters only) and answers without jsonschema; it only ever accepts bodies
the schema accepts (a test checks this on mutated bodies), anything else goes to jsonschema.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from importlib import resources
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import ValidationError, best_match

SCHEMA_FILE = "template_message.json"
MARKETING_SCHEMA_FILE = "marketing_message.json"
_DETAILS_MAX = 300


@dataclass(frozen=True, slots=True)
class RequestProblem:
    """Why a request body is refused: the Graph error code and its ``error_data.details``."""

    code: int
    details: str


def load_template_schema(name: str = SCHEMA_FILE) -> dict[str, Any]:
    """The packaged JSON Schema document for a template send request (`marketing_message.json`:
    the Marketing Messages API's)."""
    text = (resources.files("daemon.mockapi") / "schema" / name).read_text("utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def inline_refs(document: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of ``document`` with every local ``$ref`` replaced by its target (acyclic only)."""

    def resolve(pointer: str) -> Any:
        node: Any = document
        for part in pointer.removeprefix("#/").split("/"):
            node = node[part.replace("~1", "/").replace("~0", "~")]
        return node

    def walk(node: Any, active: tuple[str, ...]) -> Any:
        if isinstance(node, list):
            return [walk(item, active) for item in node]
        if not isinstance(node, dict):
            return node
        out = {k: walk(v, active) for k, v in node.items() if k != "$ref"}
        ref = node.get("$ref")
        if ref is None:
            return out
        if not ref.startswith("#/"):
            raise ValueError(f"non-local $ref {ref!r}")
        if ref in active:
            raise ValueError(f"recursive $ref {ref!r} cannot be inlined")
        target = walk(resolve(ref), (*active, ref))
        if not out or set(out) <= {"description"}:
            return target
        return {**out, "allOf": [*out.get("allOf", []), target]}

    root = {k: v for k, v in document.items() if k != "components"}
    inlined: dict[str, Any] = walk(root, ())
    return inlined


class TemplateMessageValidator:
    """Checks send-request bodies; build once, call :meth:`check` per request.
    ``marketing``: the Marketing Messages API's body (``marketing_message.json``)."""

    def __init__(
        self, document: Mapping[str, Any] | None = None, *, marketing: bool = False
    ) -> None:
        name = MARKETING_SCHEMA_FILE if marketing else SCHEMA_FILE
        doc = dict(document) if document is not None else load_template_schema(name)
        Draft202012Validator.check_schema(doc)
        self._validator = Draft202012Validator(inline_refs(doc))
        self._fast = fast_marketing_valid if marketing else fast_path_valid

    def check(self, body: object) -> RequestProblem | None:
        """None when ``body`` is a valid template message, else the error to answer with."""
        if self._fast(body):
            return None
        error = best_match(self._validator.iter_errors(body))
        if error is None:
            return None
        return problem_from_error(error)

    def is_schema_valid(self, body: object) -> bool:
        """The full schema verdict, without the fast path (for tests and tooling)."""
        return bool(self._validator.is_valid(body))


_FAST_TOP = frozenset(
    ("messaging_product", "recipient_type", "to", "type", "template", "biz_opaque_callback_data")
)
_FAST_TOP_REQUIRED = frozenset(("messaging_product", "recipient_type", "to", "type", "template"))
_FAST_TEMPLATE = frozenset(("name", "language", "components"))
_FAST_LANGUAGE = frozenset(("code", "policy"))
_FAST_COMPONENT = frozenset(("type", "parameters"))
_FAST_BUTTON = frozenset(("type", "sub_type", "index", "parameters"))
_BUTTON_SUB_TYPES = frozenset(("quick_reply", "url", "catalog", "copy_code"))
_DIGITS = frozenset("0123456789")
_FAST_MM_TOP = frozenset(
    (
        "messaging_product",
        "recipient_type",
        "to",
        "type",
        "template",
        "biz_opaque_callback_data",
        "product_policy",
        "message_activity_sharing",
        "message_send_ttl_seconds",
    )
)
_PRODUCT_POLICIES = frozenset(("CLOUD_API_FALLBACK", "STRICT"))
_LOCATION_KEYS = frozenset(("latitude", "longitude", "name", "address"))


def fast_path_valid(body: object) -> bool:
    """True only for bodies of the common shape that the schema certainly accepts.

    The shape: the required top-level fields (plus biz_opaque_callback_data), a template with
    name, language and header/body/button components whose parameters carry exactly the keys
    their type needs. False means "ask the full schema", not "invalid".
    """
    return fast_top_valid(body) and _fast_template_valid(body["template"])  # type: ignore[index]


def fast_top_valid(body: object) -> bool:
    """`fast_path_valid` but for the template object (`mockapi.template_fit` checks that)."""
    if type(body) is not dict:
        return False
    keys = body.keys()
    if not (_FAST_TOP_REQUIRED <= keys <= _FAST_TOP):
        return False
    to = body["to"]
    if (
        body["messaging_product"] != "whatsapp"
        or body["type"] != "template"
        or body["recipient_type"] not in ("individual", "group")
        or type(to) is not str
        or not to
    ):
        return False
    if "biz_opaque_callback_data" in keys:
        callback = body["biz_opaque_callback_data"]
        if type(callback) is not str or len(callback) > 512:
            return False
    return True


def fast_marketing_valid(body: object) -> bool:
    """`fast_path_valid` for the Marketing Messages API's body: the same template, plus the
    optional product_policy, message_activity_sharing and message_send_ttl_seconds."""
    return fast_marketing_top_valid(body) and _fast_template_valid(body["template"])  # type: ignore[index]


def fast_marketing_top_valid(body: object) -> bool:
    """`fast_marketing_valid` but for the template object."""
    if type(body) is not dict:
        return False
    keys = body.keys()
    if not (_FAST_TOP_REQUIRED <= keys <= _FAST_MM_TOP):
        return False
    to = body["to"]
    if (
        body["messaging_product"] != "whatsapp"
        or body["type"] != "template"
        or body["recipient_type"] != "individual"
        or type(to) is not str
        or not to
    ):
        return False
    if "biz_opaque_callback_data" in keys:
        callback = body["biz_opaque_callback_data"]
        if type(callback) is not str or len(callback) > 512:
            return False
    if "product_policy" in keys and body["product_policy"] not in _PRODUCT_POLICIES:
        return False
    if "message_activity_sharing" in keys and type(body["message_activity_sharing"]) is not bool:
        return False
    if "message_send_ttl_seconds" in keys:
        ttl = body["message_send_ttl_seconds"]
        if type(ttl) is not int or not 43200 <= ttl <= 2592000:
            return False
    return True


def _fast_template_valid(template: object) -> bool:
    if type(template) is not dict:
        return False
    if not ({"name", "language"} <= template.keys() <= _FAST_TEMPLATE):
        return False
    language = template["language"]
    if type(template["name"]) is not str or type(language) is not dict:
        return False
    if "code" not in language or not language.keys() <= _FAST_LANGUAGE:
        return False
    if type(language["code"]) is not str:
        return False
    if "policy" in language and language["policy"] != "deterministic":
        return False
    components = template.get("components", [])
    if type(components) is not list:
        return False
    return all(_fast_component_valid(component) for component in components)


def _fast_component_valid(component: object) -> bool:
    if type(component) is not dict or "type" not in component:
        return False
    kind = component["type"]
    if kind == "button":
        index = component.get("index")
        parameters = component.get("parameters")
        return (
            component.keys() == _FAST_BUTTON
            and type(component["sub_type"]) is str
            and component["sub_type"] in _BUTTON_SUB_TYPES
            and type(index) is str
            and len(index) == 1
            and index in _DIGITS
            and type(parameters) is list
            and len(parameters) > 0
            and all(_fast_button_parameter_valid(p) for p in parameters)
        )
    if kind not in ("body", "header") or not component.keys() <= _FAST_COMPONENT:
        return False
    if "parameters" not in component:
        return True
    parameters = component["parameters"]
    if type(parameters) is not list or (kind == "header" and not parameters):
        return False
    return all(_fast_parameter_valid(p) for p in parameters)


def _fast_parameter_valid(parameter: object) -> bool:
    if type(parameter) is not dict:
        return False
    size = len(parameter)
    if size != 2 and not (size == 3 and type(parameter.get("parameter_name")) is str):
        return False
    kind = parameter.get("type")
    if type(kind) is not str or kind not in parameter or kind == "parameter_name":
        return False
    value = parameter[kind]
    if kind == "text":
        return type(value) is str and len(value) <= 32768
    if type(value) is not dict:
        return False
    if kind == "location":
        return (
            "latitude" in value
            and "longitude" in value
            and value.keys() <= _LOCATION_KEYS
            and all(type(v) is str for v in value.values())
        )
    if kind == "currency":
        return (
            type(value.get("fallback_value")) is str
            and type(value.get("code")) is str
            and type(value.get("amount_1000")) is int
        )
    if kind == "date_time":
        return type(value.get("fallback_value")) is str
    if kind in ("image", "document", "video"):
        # MediaObject is a oneOf: exactly one of id/link.
        if ("id" in value) == ("link" in value):
            return False
        return type(value.get("id", value.get("link"))) is str
    return False


def _fast_button_parameter_valid(parameter: object) -> bool:
    if type(parameter) is not dict or len(parameter) != 2:
        return False
    kind = parameter.get("type")
    if kind == "coupon_code":
        value = parameter.get(kind)
        return type(value) is str and len(value) <= 15
    return kind in ("payload", "text") and type(parameter.get(kind)) is str


def basic_problem(body: object) -> RequestProblem | None:
    """The minimum the mock needs even with validation off: an object with a usable ``to``."""
    if not isinstance(body, dict):
        return RequestProblem(100, "The request body must be a JSON object.")
    to = body.get("to")
    if to is None:
        return RequestProblem(131008, "The parameter to is required.")
    if not isinstance(to, str) or not to:
        return RequestProblem(100, "Invalid parameter to.")
    return None


def problem_from_error(error: ValidationError) -> RequestProblem:
    """Map a jsonschema error to the Graph error code and details Meta would answer with."""
    path = _dotted(error.absolute_path)
    if error.validator == "required" and isinstance(error.instance, dict):
        required = error.validator_value if isinstance(error.validator_value, list) else []
        missing = next((name for name in required if name not in error.instance), "?")
        name = f"{path}.{missing}" if path else str(missing)
        return RequestProblem(131008, f"The parameter {name} is required.")
    if error.validator == "additionalProperties" and isinstance(error.instance, dict):
        known = error.schema.get("properties", {}) if isinstance(error.schema, dict) else {}
        unexpected = next((key for key in error.instance if key not in known), "?")
        return RequestProblem(100, f'Unexpected key "{unexpected}" on param "{path or "message"}".')
    if path == "type" and error.validator in ("const", "enum"):
        return RequestProblem(100, "Message must be a template message.")
    if path == "messaging_product" and error.validator in ("const", "enum"):
        return RequestProblem(100, "The parameter messaging_product must be set to whatsapp.")
    details = f"Invalid parameter {path or 'message'}: {error.message}"
    return RequestProblem(100, details[:_DETAILS_MAX])


def _dotted(path: Iterable[str | int]) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out
