"""The audit chain is keyed (HMAC with RUNBOARD_AUDIT_KEY): whoever rewrites history in the
database without the key is caught by ``verify_audit``, even after recomputing the chain."""

from __future__ import annotations

import hashlib
import hmac
import io
from collections.abc import Callable
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from adminpanel.audit import chain
from adminpanel.models import AuditEntry
from tests.audit.support import attempt, tamper

pytestmark = pytest.mark.django_db

TABLE = AuditEntry._meta.db_table
KEY_A = "a-first-audit-key-of-32-characters-or-more"
KEY_B = "another-audit-key-of-32-characters-or-more"

Hasher = Callable[[dict[str, Any]], tuple[int, str]]


def verify(*args: str) -> str:
    out = io.StringIO()
    call_command("verify_audit", *args, stdout=out)
    return out.getvalue()


def broken(*args: str) -> str:
    with pytest.raises(CommandError) as caught:
        verify(*args)
    assert caught.value.returncode == 1
    return str(caught.value)


def three_attempts() -> list[AuditEntry]:
    for n in range(3):
        attempt(reason=f"reason {n}", request_id=f"req-{n}")
    return list(AuditEntry.objects.order_by("seq"))


def fields_of(entry: AuditEntry) -> dict[str, Any]:
    return {name: getattr(entry, name) for name in chain.KEYED_FIELDS}


def unkeyed_as_scheme(scheme: int) -> Hasher:
    def hasher(fields: dict[str, Any]) -> tuple[int, str]:
        return scheme, hashlib.sha256(chain.hash_input(fields, chain.HASHED_FIELDS)).hexdigest()

    return hasher


def keyed_with(key: str) -> Hasher:
    def hasher(fields: dict[str, Any]) -> tuple[int, str]:
        fields = {**fields, "scheme": chain.KEYED}
        return chain.KEYED, chain.record_hash(fields, key.encode())

    return hasher


def rewrite(from_seq: int, reason: str, hasher: Hasher) -> None:
    """Edit entry ``from_seq``'s reason and recompute the chain from there, as an attacker
    with the database (and ``chain.record_hash``) but without the right key would."""
    prev_hash = AuditEntry.objects.get(seq=from_seq).prev_hash
    for entry in AuditEntry.objects.filter(seq__gte=from_seq).order_by("seq"):
        fields = fields_of(entry)
        fields["prev_hash"] = prev_hash
        if entry.seq == from_seq:
            fields["reason"] = reason
        scheme, new_hash = hasher({**fields, "scheme": None})
        tamper(
            f"UPDATE {TABLE} SET reason = %s, prev_hash = %s, hash = %s, scheme = %s WHERE id = %s",
            [fields["reason"], prev_hash, new_hash, scheme, entry.pk],
        )
        prev_hash = new_hash


def test_new_entries_are_keyed_hmacs_not_plain_hashes() -> None:
    entry = three_attempts()[0]
    assert entry.scheme == chain.KEYED
    plain = hashlib.sha256(chain.hash_input(fields_of(entry), chain.KEYED_FIELDS)).hexdigest()
    assert entry.hash != plain
    mac = hmac.new(chain.audit_key(), chain.hash_input(fields_of(entry), chain.KEYED_FIELDS),
                   hashlib.sha256).hexdigest()  # fmt: skip
    assert entry.hash == mac


def test_an_entry_rewritten_with_a_recomputed_unkeyed_chain_is_named() -> None:
    rows = three_attempts()
    rewrite(3, "nobody asked", unkeyed_as_scheme(chain.KEYED))
    message = broken()
    assert f"entry #3 (id {rows[2].pk})" in message and "altered" in message


def test_an_entry_relabelled_as_unkeyed_after_keyed_ones_is_named() -> None:
    rows = three_attempts()
    rewrite(3, "nobody asked", unkeyed_as_scheme(chain.UNKEYED))
    message = broken()
    assert f"entry #3 (id {rows[2].pk})" in message
    assert "unkeyed hash after keyed entries" in message


def test_an_entry_rewritten_with_another_key_is_named() -> None:
    rows = three_attempts()
    rewrite(2, "nobody asked", keyed_with(KEY_B))
    message = broken()
    assert f"entry #2 (id {rows[1].pk})" in message and "RUNBOARD_AUDIT_KEY" in message


def test_with_the_key_an_untouched_chain_verifies() -> None:
    with override_settings(RUNBOARD_AUDIT_KEY=KEY_A):
        rows = three_attempts()
        assert verify().strip() == f"audit chain intact: 6 entries, head #6 {rows[-1].hash}"


def test_a_chain_checked_with_another_key_than_it_was_written_with_fails_at_once() -> None:
    with override_settings(RUNBOARD_AUDIT_KEY=KEY_A):
        rows = three_attempts()
    with override_settings(RUNBOARD_AUDIT_KEY=KEY_B):
        assert f"entry #1 (id {rows[0].pk})" in broken()


def test_the_key_derived_from_the_secret_key_is_not_the_secret_key_itself() -> None:
    from django.conf import settings

    assert chain.audit_key() != settings.SECRET_KEY.encode()
    with override_settings(RUNBOARD_AUDIT_KEY=KEY_A):
        assert chain.audit_key() == KEY_A.encode()


def test_entries_written_unkeyed_before_the_upgrade_still_verify_under_keyed_ones(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as before_upgrade:
        before_upgrade.setattr(chain, "KEYED", chain.UNKEYED)
        attempt(reason="old")
    attempt(reason="new")
    schemes = list(AuditEntry.objects.order_by("seq").values_list("scheme", flat=True))
    assert schemes == [chain.UNKEYED, chain.UNKEYED, chain.KEYED, chain.KEYED]
    out = verify()
    assert out.startswith("audit chain intact: 4 entries, head #4 ")
    assert "the first 2 entries are unkeyed" in out


def test_an_old_unkeyed_entry_rewritten_breaks_the_keyed_entry_after_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with monkeypatch.context() as before_upgrade:
        before_upgrade.setattr(chain, "KEYED", chain.UNKEYED)
        attempt(reason="old")
    attempt(reason="new")
    tamper(f"UPDATE {TABLE} SET reason = %s WHERE seq = 1", ["rewritten"])
    rows = list(AuditEntry.objects.order_by("seq"))
    # Recompute the unkeyed part; the first keyed entry cannot be recomputed without the key.
    first = fields_of(rows[0])
    first["scheme"] = chain.UNKEYED
    h1 = chain.record_hash(first)
    second = {**fields_of(rows[1]), "prev_hash": h1, "scheme": chain.UNKEYED}
    h2 = chain.record_hash(second)
    tamper(f"UPDATE {TABLE} SET hash = %s WHERE seq = 1", [h1])
    tamper(f"UPDATE {TABLE} SET prev_hash = %s, hash = %s WHERE seq = 2", [h1, h2])
    assert f"entry #3 (id {rows[2].pk})" in broken()
