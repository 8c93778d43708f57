"""The daemon's event loop choice (runtime.event_loop)."""

from __future__ import annotations

import asyncio
import sys

import pytest
import uvloop

from daemon.config import load_config
from daemon.engine import eventloop
from daemon.errors import ConfigError


async def _loop_module() -> str:
    return type(asyncio.get_running_loop()).__module__


@pytest.mark.parametrize(("choice", "module"), [("auto", "uvloop"), ("uvloop", "uvloop")])
def test_uvloop_is_used_when_chosen_or_installed(choice: str, module: str) -> None:
    assert eventloop.run(_loop_module(), choice).split(".")[0] == module


def test_asyncio_choice_runs_the_standard_loop() -> None:
    assert eventloop.loop_factory("asyncio") is None
    assert eventloop.run(_loop_module(), "asyncio").startswith("asyncio")


def test_without_uvloop_auto_falls_back_and_uvloop_is_one_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "uvloop", None)  # import uvloop -> ImportError
    assert eventloop.loop_factory("auto") is None
    main = _loop_module()
    with pytest.raises(ConfigError, match="uvloop is not installed"):
        eventloop.run(main, "uvloop")
    assert main.cr_frame is None  # closed, no "never awaited" warning


def test_the_loop_choice_is_checked_when_the_config_loads() -> None:
    config = load_config(None, {"WA_SENDER_RUNTIME_EVENT_LOOP": "asyncio"})
    assert config.runtime.event_loop == "asyncio"
    assert load_config(None, {}).runtime.event_loop == "auto"
    with pytest.raises(ConfigError, match=r"runtime\.event_loop"):
        load_config(None, {"WA_SENDER_RUNTIME_EVENT_LOOP": "tokio"})


def test_uvloop_factory_makes_uvloop_loops() -> None:
    factory = eventloop.loop_factory("uvloop")
    assert factory is uvloop.new_event_loop
