"""What each service started by a LocalStack finds in its environment."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dxtalent.stack import STACK_VARIABLES, LocalStack, operator_env
from dxtalent_infra.settings import Settings

EVERY_SETTING = {f"DXT_{name.upper()}": f"value-of-{name}" for name in Settings.model_fields}


def test_every_operator_setting_reaches_every_service_under_up() -> None:
    """Given every DXT_ setting in the operator's environment, `up`'s stack gives each service
    all of them, except the servers, prefix and port, which are the stack's own."""
    stack = LocalStack(
        Path("/nonexistent"),
        "nats://127.0.0.1:4",
        "postgresql://p@127.0.0.1:5/d",
        prefix="t1",
        extra_env=operator_env({**EVERY_SETTING, "HOME": "/home/op"}),
    )
    env = stack.env_for(port=9001)
    passed = {k: v for k, v in EVERY_SETTING.items() if k not in STACK_VARIABLES}
    assert passed.items() <= env.items()
    assert set(EVERY_SETTING) - set(passed) == STACK_VARIABLES
    assert (env["DXT_NATS_URL"], env["DXT_DATABASE_URL"], env["DXT_PREFIX"]) == (
        "nats://127.0.0.1:4",
        "postgresql://p@127.0.0.1:5/d",
        "t1",
    )
    assert env["DXT_HTTP_PORT"] == "9001"
    assert "HOME" not in operator_env({"HOME": "/home/op"})


def test_a_stack_without_operator_settings_ignores_this_process_dxt_variables(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Given DXT_API_TOKEN in the test process, a stack built without extra_env (tests, demo)
    does not hand it to its services."""
    monkeypatch.setenv("DXT_API_TOKEN", "from-the-shell")
    env = LocalStack(Path("/nonexistent"), "nats://x:1", "postgresql://x@y:2/z").env_for(1)
    assert "DXT_API_TOKEN" not in env
    assert env["PATH"] == os.environ["PATH"]
