"""``manage.py verify_audit [--expect-head HASH] [--head-file F]``: is the audit chain whole?

Walks the hash chain from its first entry (``chain.verify``) with the audit key.
Exit 0 and one line naming the head (note its hash: ``--expect-head`` with it
later also catches newest entries removed since; ``--head-file`` does the same
with the heads recorded in ``RUNBOARD_AUDIT_HEAD_FILE``, each of which the
chain must still hold), or exit 1
naming the first entry that was altered or removed.
"""

from __future__ import annotations

import re
from typing import Any

import structlog
from django.core.management.base import BaseCommand, CommandError, CommandParser

from adminpanel.audit import chain, head

log = structlog.get_logger(__name__)

_HASH = re.compile(r"[0-9a-f]{64}")


class Command(BaseCommand):
    help = "Check the audit log's hash chain; name the first entry altered or removed."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--expect-head",
            metavar="HASH",
            default="",
            help="a head hash noted earlier (from this command's output): also catch newer "
            "entries removed from the end",
        )
        parser.add_argument(
            "--head-file",
            metavar="FILE",
            default="",
            help="a head file (RUNBOARD_AUDIT_HEAD_FILE): the chain must still reach its "
            "newest head, and hold every recorded head with the same hash",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        expect = str(options["expect_head"] or "").strip().lower()
        if expect and not _HASH.fullmatch(expect):
            raise CommandError(
                f"--expect-head must be a head hash as this command prints it "
                f"(64 hex digits), not {options['expect_head']!r}"
            )
        recorded: list[head.Head] = []
        if options["head_file"]:
            try:
                recorded = head.read(options["head_file"])
            except head.HeadFileError as exc:
                raise CommandError(str(exc), returncode=2) from None
        report = chain.verify(expect_head=expect or None, recorded=recorded)
        if report.problem is None:
            log.info("audit_chain_verified", entries=report.checked, head_seq=report.head_seq)
            self.stdout.write(
                f"audit chain intact: {report.checked} entries, "
                f"head #{report.head_seq} {report.head_hash}"
            )
            if report.unkeyed:
                # Expected once after upgrading; on a chain keyed from the start, a rewrite.
                self.stdout.write(
                    f"note: the first {report.unkeyed} entries are unkeyed (written before "
                    "the chain was keyed); compare the head with a recorded one (--head-file)"
                )
            return
        problem = report.problem
        where = f"entry #{problem.seq}" + (
            f" (id {problem.entry_id})" if problem.entry_id is not None else ""
        )
        log.warning(
            "audit_chain_broken",
            seq=problem.seq,
            entry_id=problem.entry_id,
            what=problem.what,
            intact_entries=report.checked,
        )
        raise CommandError(
            f"audit chain broken at {where}: {problem.what}. "
            f"The {report.checked} entries before it (up to #{report.head_seq}) are intact.",
            returncode=1,
        )
