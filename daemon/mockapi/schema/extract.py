"""Extract the template-message request schema from Meta's OpenAPI spec (dev-only).

Usage: python daemon/mockapi/schema/extract.py SPEC.yaml [OUT_DIR] [OFFICIAL_DIR]

Reads ``components/schemas/TemplateMessage`` (the body of ``POST /messages``) and
``MarketingMessageRequestPayload`` (``POST /marketing_messages``) and every schema they reach
(``$ref`` and ``discriminator`` mappings), turns the OpenAPI dialect into plain JSON Schema
2020-12 and writes self-contained documents whose refs resolve locally
(``#/components/schemas/X``):

- into OUT_DIR (default: beside this file) the mock's documents, ``template_message.json``
  and ``marketing_message.json``, mended where Meta's own documentation sends bodies the
  spec refuses (``PATCHES``, also in each document's ``x-patches``);
- into OFFICIAL_DIR (default: ``tests/data/schema``) the same documents with no patch at all
  (``official_*.json``): the tests validate every body wa-sender builds against them too,
  and list exactly which exception each body needs.

Needs PyYAML; never imported by the daemon at run time.
"""

from __future__ import annotations

import copy
import hashlib
import importlib
import json
import sys
from pathlib import Path
from typing import Any

ROOT = "TemplateMessage"
MARKETING_ROOT = "MarketingMessageRequestPayload"
REF_PREFIX = "#/components/schemas/"
DROPPED_KEYWORDS = frozenset({"example", "examples", "discriminator", "xml", "externalDocs"})

# Top-level fields a template send may carry: the spec's own plus biz_opaque_callback_data,
# which Meta documents for /messages (notes §1) but the v23.0 spec leaves out.
TOP_LEVEL_FIELDS = (
    "messaging_product",
    "recipient_type",
    "to",
    "type",
    "context",
    "template",
    "biz_opaque_callback_data",
)

PATCHES = (
    "LanguageObject: 'policy' no longer required (Meta's own request examples omit it)",
    "TemplateComponent/ButtonComponent: index pattern '^[2-6, 11-14]$' (a broken character"
    " class: it takes '1'..'6' and rejects '0', '7', '8', '9') replaced by '^[0-9]$'"
    " (button position 0-9)",
    "TemplateComponent/ButtonComponent: sub_type enum [quick_reply, url, catalog] gains"
    " 'copy_code' (Meta's copy-code coupon button, documented for marketing templates)",
    "ButtonParameterObject: type enum [payload, text] gains 'coupon_code'"
    " (CouponCodeParameter: coupon_code, a string of at most 15 characters)",
    "ParameterObject: type enum gains 'location' (LocationParameter: latitude, longitude"
    " required, name and address optional), Meta's location header",
    "discriminator mappings turned into if/then dispatch on 'type'; the mapped subtypes lose"
    " their allOf back-reference to the dispatching schema (it would recurse forever)",
    "root: messaging_product == 'whatsapp', type == 'template', to non-empty,"
    " biz_opaque_callback_data string of at most 512 characters, unknown top-level fields"
    " rejected",
    "MarketingMessageRequestPayload: biz_opaque_callback_data (string, at most 512) and"
    " message_send_ttl_seconds (integer, 43200..2592000) allowed beside the spec's fields",
)

COUPON_CODE_PARAMETER = {
    "allOf": [
        {
            "type": "object",
            "required": ["coupon_code"],
            "properties": {
                "type": {"enum": ["coupon_code"]},
                "coupon_code": {"type": "string", "maxLength": 15},
            },
        }
    ]
}
LOCATION_PARAMETER = {
    "allOf": [
        {
            "type": "object",
            "required": ["location"],
            "properties": {
                "type": {"enum": ["location"]},
                "location": {
                    "type": "object",
                    "required": ["latitude", "longitude"],
                    "properties": {
                        "latitude": {"type": "string"},
                        "longitude": {"type": "string"},
                        "name": {"type": "string"},
                        "address": {"type": "string"},
                    },
                    "additionalProperties": False,
                },
            },
        }
    ]
}


def collect(schemas: dict[str, Any], root: str) -> dict[str, Any]:
    """The root schema and every schema it reaches through $ref or discriminator mappings."""
    found: dict[str, Any] = {}
    todo = [root]
    while todo:
        name = todo.pop()
        if name in found:
            continue
        found[name] = schemas[name]
        todo.extend(_referenced(schemas[name]))
    return dict(sorted(found.items()))


def _referenced(node: Any) -> list[str]:
    names: list[str] = []
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "$ref":
                names.append(_ref_name(value))
            elif key == "discriminator":
                names.extend(_ref_name(v) for v in value.get("mapping", {}).values())
            elif key not in ("example", "examples"):
                names.extend(_referenced(value))
    elif isinstance(node, list):
        for item in node:
            names.extend(_referenced(item))
    return names


def _ref_name(ref: str) -> str:
    if not ref.startswith(REF_PREFIX):
        raise ValueError(f"unsupported $ref {ref!r}")
    return ref.removeprefix(REF_PREFIX)


def to_json_schema(node: Any) -> Any:
    """OpenAPI schema object -> JSON Schema 2020-12 (nullable, boolean exclusive bounds)."""
    if isinstance(node, list):
        return [to_json_schema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: to_json_schema(v) for k, v in node.items() if k not in DROPPED_KEYWORDS}
    if out.pop("nullable", False):
        if "type" in out:
            types = out["type"] if isinstance(out["type"], list) else [out["type"]]
            out["type"] = [*types, "null"]
        if "enum" in out and None not in out["enum"]:
            out["enum"] = [*out["enum"], None]
    for bound, limit in (("exclusiveMinimum", "minimum"), ("exclusiveMaximum", "maximum")):
        if isinstance(out.get(bound), bool) and out.pop(bound) and limit in out:
            out[bound] = out.pop(limit)
    return out


def dispatch_discriminators(raw: dict[str, Any], converted: dict[str, Any]) -> None:
    """Replace each discriminator by if/then branches that apply the mapped subtype."""
    for name, schema in raw.items():
        disc = schema.get("discriminator") if isinstance(schema, dict) else None
        if not disc:
            continue
        prop = disc["propertyName"]
        branches = []
        for value, ref in sorted(disc.get("mapping", {}).items()):
            sub = converted[_ref_name(ref)]
            own = [p for p in sub.get("allOf", []) if p.get("$ref") != REF_PREFIX + name]
            if "allOf" in sub:
                sub["allOf"] = own
            branches.append(
                {
                    "if": {"properties": {prop: {"const": value}}, "required": [prop]},
                    "then": {"$ref": ref},
                }
            )
        converted[name] = {**converted[name], "allOf": branches}


def apply_patches(schemas: dict[str, Any]) -> None:
    """Meta's spec mended where the real API differs (listed in ``PATCHES``)."""
    lang = schemas["LanguageObject"]
    lang["required"] = [r for r in lang["required"] if r != "policy"]
    for name in ("TemplateComponent", "ButtonComponent"):
        for props in _all_properties(schemas[name]):
            if "index" in props and "pattern" in props["index"]:
                props["index"]["pattern"] = "^[0-9]$"
            if "sub_type" in props and "enum" in props["sub_type"]:
                props["sub_type"]["enum"] = [*props["sub_type"]["enum"], "copy_code"]
    _add_dispatched(
        schemas,
        "ButtonParameterObject",
        "coupon_code",
        "CouponCodeParameter",
        COUPON_CODE_PARAMETER,
    )
    _add_dispatched(schemas, "ParameterObject", "location", "LocationParameter", LOCATION_PARAMETER)
    if MARKETING_ROOT in schemas:
        props = schemas[MARKETING_ROOT]["properties"]
        props["biz_opaque_callback_data"] = {"type": "string", "maxLength": 512}
        props["message_send_ttl_seconds"] = {
            "type": "integer",
            "minimum": 43200,
            "maximum": 2592000,
        }


def _add_dispatched(
    schemas: dict[str, Any], parent: str, value: str, name: str, schema: dict[str, Any]
) -> None:
    """A parameter type the spec lacks: in the parent's type enum and its if/then dispatch."""
    schemas[name] = copy.deepcopy(schema)
    node = schemas[parent]
    node["properties"]["type"]["enum"] = [*node["properties"]["type"]["enum"], value]
    node["allOf"] = [
        *node.get("allOf", []),
        {
            "if": {"properties": {"type": {"const": value}}, "required": ["type"]},
            "then": {"$ref": REF_PREFIX + name},
        },
    ]


def _all_properties(schema: dict[str, Any]) -> list[dict[str, Any]]:
    found = [schema["properties"]] if "properties" in schema else []
    for part in schema.get("allOf", []):
        found.extend(_all_properties(part))
    return found


def build_document(
    spec: dict[str, Any], source: str, *, root: str = ROOT, patched: bool = True
) -> dict[str, Any]:
    """The self-contained JSON Schema document of a request body (`root`): with the mock's
    patches, or exactly as the spec says (`patched=False`, OpenAPI keywords translated)."""
    raw = collect(spec["components"]["schemas"], root)
    converted = {name: to_json_schema(schema) for name, schema in raw.items()}
    dispatch_discriminators(raw, converted)
    document: dict[str, Any] = {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$comment": f"Extracted from {source} (components/schemas/{root}) by extract.py.",
        "x-openapi-version": spec.get("openapi"),
        "x-api-version": spec.get("info", {}).get("version"),
    }
    if patched:
        apply_patches(converted)
        document["x-patches"] = list(PATCHES)
    else:
        document["x-patches"] = []
    document["allOf"] = [{"$ref": REF_PREFIX + root}]
    if patched and root == ROOT:
        document["properties"] = {
            **dict.fromkeys(TOP_LEVEL_FIELDS, True),
            "messaging_product": {"const": "whatsapp"},
            "type": {"const": "template"},
            "to": {"type": "string", "minLength": 1},
            "biz_opaque_callback_data": {"type": "string", "maxLength": 512},
        }
        document["additionalProperties"] = False
    document["components"] = {"schemas": converted}
    return document


OUTPUTS = (("template_message.json", ROOT), ("marketing_message.json", MARKETING_ROOT))


def main(argv: list[str]) -> int:
    """Command line: read the spec, write the documents; the exit code."""
    if len(argv) not in (2, 3, 4):
        print(__doc__, file=sys.stderr)
        return 2
    yaml = importlib.import_module("yaml")
    spec_path = Path(argv[1])
    here = Path(__file__).parent
    out_dir = Path(argv[2]) if len(argv) >= 3 else here
    official_dir = Path(argv[3]) if len(argv) == 4 else here.parents[2] / "tests/data/schema"
    text = spec_path.read_text(encoding="utf-8")
    spec = yaml.safe_load(text)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
    official_dir.mkdir(parents=True, exist_ok=True)
    for filename, root in OUTPUTS:
        for directory, name, patched in (
            (out_dir, filename, True),
            (official_dir, f"official_{filename}", False),
        ):
            document = build_document(spec, spec_path.name, root=root, patched=patched)
            document["x-source-sha256"] = digest
            out = directory / name
            out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", "utf-8")
            print(f"wrote {out} ({len(document['components']['schemas'])} schemas)")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
