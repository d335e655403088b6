"""``manage.py prune``: what it prints, what it refuses, and its loop until SIGTERM."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.core.management import CommandError, call_command

from adminpanel.management.commands.prune import Command
from adminpanel.models import DispatchSkip, Flag, TimelineEvent
from tests.retention.support import DAY, NOW, flag, make_session, skips, timeline_events

ROOT = Path(__file__).resolve().parent.parent.parent


def command_at_now() -> Command:
    command = Command(stdout=io.StringIO())
    command.clock = lambda: NOW
    return command


def run(*args: str) -> str:
    command = command_at_now()
    call_command(command, *args)
    return command.stdout._out.getvalue()  # type: ignore[attr-defined]


@pytest.fixture
def old_rows(db: None) -> None:
    session = make_session()
    timeline_events(session, 45 * DAY, count=35)
    timeline_events(session, 5 * DAY, count=2)
    skips(session, 45 * DAY)
    flag(session, "stuck", raised_age=60 * DAY, cleared_age=None)


def test_prune_prints_what_it_deleted_per_table(old_rows: None) -> None:
    output = run("--days", "30", "--batch", "10")

    assert output.splitlines() == [
        "cutoff 2026-11-04T12:00:00+00:00",
        "timeline events: 35 deleted in 4 batches",
        "dispatch skips: 1 deleted in 1 batch",
        "cleared flags: 0 deleted",
        output.splitlines()[-2],
        "message texts: 0 dropped (0 requeued, 0 from before 2026-11-27T12:00:00+00:00)",
    ]
    assert output.splitlines()[-2].startswith("longest batch: ")
    assert TimelineEvent.objects.count() == 2 and not DispatchSkip.objects.exists()
    assert Flag.objects.count() == 1


def test_prune_keeps_retention_days_from_the_settings_when_no_days_are_given(
    old_rows: None, settings: object
) -> None:
    settings.RUNBOARD_RETENTION_DAYS = 50  # type: ignore[attr-defined]

    output = run()

    assert "timeline events: 0 deleted" in output.splitlines()
    assert TimelineEvent.objects.count() == 37


def test_a_dry_run_says_what_would_go_and_deletes_nothing(old_rows: None) -> None:
    output = run("--days", "30", "--batch", "10", "--dry-run")

    assert output.splitlines() == [
        "dry run: cutoff 2026-11-04T12:00:00+00:00",
        "timeline events: 35 would be deleted in 4 batches",
        "dispatch skips: 1 would be deleted in 1 batch",
        "cleared flags: 0 would be deleted",
        "message texts: 0 would be dropped (0 requeued, 0 from before 2026-11-27T12:00:00+00:00)",
    ]
    assert TimelineEvent.objects.count() == 37 and DispatchSkip.objects.count() == 1


@pytest.mark.parametrize("days", ["0", "-3", "thirty", "1.5"])
def test_a_days_value_that_is_not_a_whole_number_of_at_least_one_is_refused(
    days: str, db: None
) -> None:
    with pytest.raises(CommandError, match=r"--days must be a whole number, at least 1; got"):
        run("--days", days)


def test_a_batch_of_zero_is_refused(db: None) -> None:
    with pytest.raises(CommandError, match=r"--batch must be a whole number, at least 1"):
        run("--batch", "0")


def test_a_prune_step_says_whether_anything_went(old_rows: None) -> None:
    command = command_at_now()
    command.days, command.batch = 30, 10

    assert command.prune_once() is True
    assert command.prune_once() is False


def test_the_wait_between_runs_ends_early_once_a_stop_signal_came(db: None) -> None:
    command = command_at_now()
    command.on_signal(signal.SIGTERM, None)

    started = time.monotonic()
    assert command.wait(60) is False
    assert time.monotonic() - started < 1


def test_the_loop_runs_a_step_then_stops_when_signalled(old_rows: None) -> None:
    command = command_at_now()
    steps: list[bool] = []
    step = command.prune_once

    def counted_step() -> bool:
        steps.append(step())
        return steps[-1]

    def wait_until_signalled(seconds: float) -> bool:
        command.on_signal(signal.SIGTERM, None)  # as if SIGTERM came during the wait
        return False

    command.prune_once = counted_step  # type: ignore[method-assign]
    command.wait = wait_until_signalled  # type: ignore[method-assign]

    call_command(command, "--loop", "--every", "5", "--days", "30")

    assert steps == [True]
    assert signal.getsignal(signal.SIGTERM) != command.on_signal


@pytest.mark.slow
def test_the_loop_command_prunes_then_exits_cleanly_on_sigterm(tmp_path: Path) -> None:
    env = {**os.environ, "RUNBOARD_VAR_DIR": str(tmp_path), "PYTHONUNBUFFERED": "1"}
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=120)
    loop = subprocess.Popen(
        [*manage, "prune", "--loop", "--every", "3600"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert loop.stdout is not None
        assert loop.stdout.readline().startswith("cutoff ")
        loop.send_signal(signal.SIGTERM)
        assert loop.wait(timeout=10) == 0
    finally:
        if loop.poll() is None:
            loop.kill()
            loop.wait()


def test_prune_blanks_message_texts_older_than_the_text_days_and_says_so(
    old_rows: None, settings: object
) -> None:
    settings.RUNBOARD_MESSAGE_TEXT_DAYS = 3  # type: ignore[attr-defined]
    session = make_session("agent:main:telegram:direct:bob")
    DispatchSkip.objects.create(
        gateway=session.gateway, session=session, kind="skip", at=NOW - 4 * DAY, text="hi"
    )

    output = run("--days", "30")

    assert output.splitlines()[-1] == (
        "message texts: 1 dropped (0 requeued, 1 from before 2026-12-01T12:00:00+00:00)"
    )
    assert list(DispatchSkip.objects.values_list("text", flat=True)) == [""]
