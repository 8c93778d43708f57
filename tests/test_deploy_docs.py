"""The documentation operators are pointed at exists: every `Documentation=` link of deploy/,
the Meta set-up guide linked from the README and covering what it must."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.helpers.proc import REPO
from tests.test_systemd_unit import SERVICE, UNIT_SECTIONS, one, values

INSTALL_ROOT = "/opt/wa-sender/"  # where the unit expects the checkout (README step 2)
GUIDE = REPO / "docs" / "meta-setup.md"


def documentation_links() -> list[str]:
    """Every URL of every Documentation= line of every unit in deploy/."""
    links = []
    for unit in (REPO / "deploy").glob("*.service"):
        for line in unit.read_text().splitlines():
            if line.startswith("Documentation="):
                links += line.partition("=")[2].split()
    return links


def test_the_unit_has_documentation_links() -> None:
    assert len(documentation_links()) >= 2


@pytest.mark.parametrize("link", documentation_links())
def test_every_documentation_link_resolves(link: str) -> None:
    assert link.startswith(f"file://{INSTALL_ROOT}"), link
    relative = link.removeprefix(f"file://{INSTALL_ROOT}")
    assert (REPO / relative).is_file(), f"{link}: {relative} is not in the repository"


def test_a_bad_configuration_is_not_restarted_forever() -> None:
    assert one(SERVICE, "RestartPreventExitStatus") == "78"
    assert one(SERVICE, "Restart") == "on-failure"
    assert UNIT_SECTIONS["Unit"] and values(UNIT_SECTIONS["Unit"], "Documentation")


def test_readme_and_deploy_readme_link_the_meta_guide() -> None:
    for doc in (REPO / "README.md", REPO / "deploy" / "README.md"):
        assert "docs/meta-setup.md" in doc.read_text(), doc
    for target in re.findall(r"\]\(([^)#:]+)\)", (REPO / "README.md").read_text()):
        assert (REPO / target).exists(), f"README.md links {target}, which does not exist"


@pytest.mark.parametrize(
    "topic",
    [
        "system user",
        "whatsapp_business_messaging",
        "whatsapp_business_management",
        "Phone number ID",
        "WhatsApp Business Account ID",
        "App secret",
        "verify token",
        "Callback URL",
        "HTTPS",
        "subscribed_apps",
        "mock",
        "`messages`",
        "`message_template_status_update`",
        "`message_template_quality_update`",
        "`template_category_update`",
        "`phone_number_quality_update`",
        "`user_preferences`",
    ],
)
def test_the_meta_guide_covers(topic: str) -> None:
    assert topic.lower() in GUIDE.read_text().lower()


def test_the_guide_names_the_settings_the_daemon_reads() -> None:
    text = GUIDE.read_text()
    for setting in (
        "WA_SENDER_WHATSAPP_ACCESS_TOKEN",
        "WA_SENDER_WHATSAPP_APP_SECRET",
        "WA_SENDER_WHATSAPP_VERIFY_TOKEN",
        "whatsapp.phone_number_id",
    ):
        assert setting in text
    assert Path(GUIDE).is_file()
