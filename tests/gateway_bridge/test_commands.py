"""Which gateway calls an action makes in each mode, and carrying them out step by step."""

from __future__ import annotations

from collections.abc import Sequence

from gateway_bridge import commands
from gateway_bridge.errors import GatewayTimeout
from gateway_bridge.results import AbortResult, ForceClearResult, RequeueResult

KEY = "agent:main:telegram:direct:alice"
MESSAGES = [("where is my answer?", "key-1")]


def methods(action: str, mode: str, messages: Sequence[tuple[str, str]] = MESSAGES) -> list[str]:
    return [c.method for c in commands.plan(action, mode, KEY, "run-1", messages)]


def test_plugin_mode_clears_and_requeues_through_the_plugin() -> None:
    assert methods("clear_and_requeue", "plugin") == [
        "runboard.registry.forceClear",
        "runboard.registry.requeue",
    ]


def test_observer_mode_falls_back_to_abort_and_send_and_says_so() -> None:
    [clear, send] = commands.plan("clear_and_requeue", "observer", KEY, "run-1", MESSAGES)
    assert (clear.method, send.method) == ("chat.abort", "chat.send")
    assert "not cleared from the registry" in clear.note


def test_a_requeue_without_messages_plans_no_call_and_abort_is_the_same_in_both_modes() -> None:
    assert methods("requeue", "plugin", []) == []
    assert methods("clear_and_requeue", "observer", []) == ["chat.abort"]
    assert methods("abort", "plugin") == methods("abort", "observer") == ["chat.abort"]


def test_the_planned_requeue_carries_previews_and_keys_not_whole_texts() -> None:
    [call] = commands.plan("requeue", "plugin", KEY, "", [("x" * 200, "key-1")])
    assert call.params["messages"] == [{"idempotencyKey": "key-1", "preview": "x" * 80}]


class Refusing:
    """A mode whose clear finds another owner; a requeue would be a mistake."""

    name = "plugin"
    requeued = False

    async def force_clear(
        self, session_key: str, expect_run_id: str, reason: str
    ) -> ForceClearResult:
        return ForceClearResult(False, session_key, "", "owner_changed", None)

    async def requeue(
        self, session_key: str, messages: Sequence[tuple[str, str]]
    ) -> list[RequeueResult]:
        self.requeued = True
        return []


async def never_abort(session_key: str, run_id: str) -> AbortResult:
    raise AssertionError("not an abort")


async def test_a_refused_clear_ends_the_action_before_its_requeue() -> None:
    mode = Refusing()
    result = await commands.carry_out(
        "clear_and_requeue", mode, never_abort,  # type: ignore[arg-type]
        session_key=KEY, run_id="run-1", reason="stuck", messages=MESSAGES, timeout_s=1.0,
    )  # fmt: skip
    assert not mode.requeued
    assert [c.command for c in result.calls] == ["force_clear"]
    assert result.cleared is not None and result.cleared.reason == "owner_changed"


async def test_a_step_that_fails_is_recorded_with_its_error_and_ends_the_action() -> None:
    async def timing_out(session_key: str, run_id: str) -> AbortResult:
        raise GatewayTimeout("no answer")

    result = await commands.carry_out(
        "abort", Refusing(), timing_out,  # type: ignore[arg-type]
        session_key=KEY, run_id="run-1", reason="", messages=[], timeout_s=1.0,
    )  # fmt: skip
    [call] = result.as_dict()["calls"]
    assert call["command"] == "abort" and call["method"] == "chat.abort"
    assert call["error"] == "TIMEOUT: no answer" and result.error_code == "TIMEOUT"
