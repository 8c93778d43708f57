"""`campaign create` as a function: a draft campaign from the template catalogue, a template
file, or (no catalogue at all) a template name only, with its values bound (`--param`,
`--set`, `--param-type`, `--header-file`). The CLI, the demo and the tests share it."""

from __future__ import annotations

import mimetypes
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import asyncpg

from daemon.core.model import CampaignId
from daemon.core.payload import Template
from daemon.core.template_check import check_constants
from daemon.core.template_spec import CampaignTemplate, HeaderFile, TemplateSource, bind_template
from daemon.core.templates import TemplateDef, TemplateError, check_usable, find_template
from daemon.db import campaigns as store
from daemon.db import templates_store
from daemon.errors import ConfigError, TemplateRefusedError


@dataclass(frozen=True)
class CampaignRequest:
    """What `campaign create` was asked for."""

    name: str
    template: str
    language: str
    phone_number_id: str
    params: Sequence[str] = ()
    sets: Mapping[str, str] = field(default_factory=dict)
    param_types: Mapping[str, str] = field(default_factory=dict)
    header_file: Path | None = None
    template_file: Sequence[TemplateDef] | None = None  # the parsed --template-file
    message_send_ttl_seconds: int | None = None
    product_policy: str | None = None
    default_country: str | None = None  # imports read national numbers in it


@dataclass(frozen=True)
class Created:
    """The new campaign and where its template came from."""

    campaign_id: CampaignId
    source: TemplateSource
    spec: CampaignTemplate | None


async def create_campaign_from_request(
    conn: asyncpg.Connection, request: CampaignRequest, waba_id: str
) -> Created:
    """Create the draft campaign (one transaction); TemplateRefusedError / ConfigError (one
    line) when the template or the values do not allow it."""
    if len(set(request.params)) != len(request.params):
        raise ConfigError("a --param column is named twice")
    header = header_file_of(request.header_file)
    if request.template_file is not None:
        source, candidates = TemplateSource.FILE, list(request.template_file)
    elif await templates_store.catalogue_size(conn, waba_id):
        source = TemplateSource.CATALOGUE
        candidates = await templates_store.templates_named(conn, request.template, waba_id)
    else:
        source, candidates = TemplateSource.UNVERIFIED, []
    spec = bind_request(request, source, candidates, header, waba_id)
    template = Template(request.template, request.language, tuple(request.params))
    async with conn.transaction():
        campaign_id = await store.create_campaign(
            conn, request.name, template, request.phone_number_id, spec=spec
        )
        if request.default_country is not None:
            await store.set_default_country(conn, campaign_id, request.default_country)
        if header is not None and request.header_file is not None:
            await templates_store.save_header_file(
                conn,
                campaign_id,
                header.filename,
                header.mime_type,
                request.header_file.read_bytes(),
            )
    return Created(campaign_id, source, spec)


def bind_request(
    request: CampaignRequest,
    source: TemplateSource,
    candidates: Sequence[TemplateDef],
    header: HeaderFile | None,
    waba_id: str,
) -> CampaignTemplate | None:
    """The campaign's template binding (None: an unverified campaign, stored as today)."""
    options = {
        "--set": bool(request.sets),
        "--param-type": bool(request.param_types),
        "--header-file": header is not None,
        "--message-send-ttl-seconds": request.message_send_ttl_seconds is not None,
        "--product-policy": request.product_policy is not None,
    }
    if source is TemplateSource.UNVERIFIED:
        needing = [name for name, given in options.items() if given]
        if needing:
            raise TemplateRefusedError(
                f"{', '.join(needing)} need the template's components: sync the catalogue"
                " (`wa-sender templates sync`) or pass --template-file"
            )
        return None
    try:
        found, same_name = find_template(candidates, request.template, request.language)
        if source is TemplateSource.FILE and found is not None and not found.status:
            chosen = found  # a hand-written file may leave the status out
        else:
            chosen = check_usable(found, same_name, request.template, request.language)
        spec = bind_template(
            chosen,
            source=source,
            others=[t for t in same_name if t is not chosen],
            param_columns=request.params,
            param_types=request.param_types,
            sets=request.sets,
            header_file=header,
            waba_id=waba_id if source is TemplateSource.CATALOGUE else "",
            message_send_ttl_seconds=request.message_send_ttl_seconds,
            product_policy=request.product_policy,
        )
        check_constants(spec)
    except TemplateError as exc:
        raise TemplateRefusedError(str(exc)) from None
    return spec


def header_file_of(path: Path | None) -> HeaderFile | None:
    """The header file's name, media type and size; ConfigError when it is not one."""
    if path is None:
        return None
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        raise ConfigError(f"header file not found: {path}") from None
    if not path.is_file():
        raise ConfigError(f"{path} is not a file")
    mime_type, _ = mimetypes.guess_type(path.name)
    if mime_type is None:
        raise ConfigError(f"{path}: unknown media type (name it .jpg, .png, .mp4, .pdf, ...)")
    return HeaderFile(path.name, mime_type, size)
