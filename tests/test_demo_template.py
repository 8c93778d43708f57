"""`wa-sender demo` sends a real template: synced from the mock's catalogue, with an image
header, a named body variable ({{first_name}}) and a URL button with each contact's suffix."""

from __future__ import annotations

import io
from importlib import resources

import asyncpg

from daemon.core.states import CampaignCommand
from daemon.core.templates import HeaderFormat, ParameterFormat, parse_template
from daemon.db.campaigns import change_campaign_state, get_campaign
from daemon.mockapi.catalogue import SAMPLE_TEMPLATES
from daemon.mockapi.config import MockConfig
from daemon.mockapi.server import start_mock_server
from daemon.ops.demo import DEMO_IMAGE, DEMO_TEMPLATE, DEMO_TOKEN, create_demo_campaign
from tests.helpers.daemon import daemon_config, running_daemon, wait_until_final


def test_the_demo_template_has_an_image_header_a_named_variable_and_a_url_button() -> None:
    template = parse_template(next(d for d in SAMPLE_TEMPLATES if d["name"] == DEMO_TEMPLATE))
    assert template.approved and template.parameter_format is ParameterFormat.NAMED
    assert template.header is not None and template.header.format is HeaderFormat.IMAGE
    assert template.body is not None and template.body.variables == ("first_name",)
    assert [(b.type.value, b.dynamic) for b in template.buttons] == [("URL", True)]


async def test_the_demo_campaign_sends_it_with_each_contact_s_values(
    db_dsn: str, conn: asyncpg.Connection
) -> None:
    sample = resources.files("daemon.demo").joinpath("contacts.csv")
    out = io.StringIO()
    async with start_mock_server(MockConfig(token=DEMO_TOKEN, record_bodies=True)) as mock:
        campaign_id, result = await create_demo_campaign(
            conn, mock.base_url, mock.config.waba_id, sample, 4, out
        )
        assert f"sends {DEMO_TEMPLATE} (image header, {{{{first_name}}}}, URL button)" in (
            out.getvalue()
        )
        campaign = await get_campaign(conn, campaign_id)
        assert campaign.template_spec.source.value == "catalogue"
        await change_campaign_state(conn, campaign_id, CampaignCommand.START)
        config = daemon_config(mock.base_url, whatsapp={"access_token": DEMO_TOKEN})
        async with running_daemon(config, db_dsn):
            final = await wait_until_final(conn, campaign_id)
        assert final == {"sent": result.imported, "invalid_record": result.invalid}
        assert mock.state.errors_by_code == {}
        rows = await conn.fetch(
            "SELECT phone, params FROM contacts WHERE campaign_id = $1 AND state = 'sent'",
            campaign_id,
        )
        by_phone = {r["phone"]: r["params"] for r in rows}
        assert len(mock.state.bodies) == result.imported == len(by_phone)
        for _, _, body in mock.state.bodies:
            params = by_phone[body["to"]]
            template = body["template"]
            assert template["name"] == DEMO_TEMPLATE
            assert template["components"] == [
                {
                    "type": "header",
                    "parameters": [{"type": "image", "image": {"link": DEMO_IMAGE}}],
                },
                {
                    "type": "body",
                    "parameters": [
                        {
                            "type": "text",
                            "parameter_name": "first_name",
                            "text": params["body.first_name"],
                        }
                    ],
                },
                {
                    "type": "button",
                    "sub_type": "url",
                    "index": "0",
                    "parameters": [{"type": "text", "text": params["button.0.url_suffix"]}],
                },
            ]
