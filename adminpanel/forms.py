"""Forms: every query string and POST body is validated here before use.

A page answers 400 with the form's messages when a parameter is wrong, and
names parameters it does not know, so a mistyped bookmark says what is wrong
instead of silently showing everything.
"""

from __future__ import annotations

import base64
import binascii
import json
from typing import Any

from django import forms
from django.http import QueryDict

from gateway_bridge.events import PHASES

REFRESH_CHOICES = (5, 10, 30)

# ?sort= values of the sessions page, with what each means (shown in the sort menu).
SORTS: dict[str, str] = {
    "age": "oldest lock first",
    "-age": "newest lock first",
    "progress": "stalest progress first",
    "waiters": "most waiters first",
    "key": "session key",
}


def encode_cursor(values: list[Any]) -> str:
    """A keyset position as URL-safe text: base64 of a JSON list of ints and strings."""
    raw = json.dumps(values, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(text: str) -> list[int | str]:
    """The inverse of ``encode_cursor``; ``ValueError`` when the text is not one."""
    try:
        raw = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
        values = json.loads(raw)
    except (ValueError, binascii.Error) as exc:
        raise ValueError("not a page cursor") from exc
    if not isinstance(values, list) or not values or not isinstance(values[0], int):
        raise ValueError("not a page cursor")
    if not all(isinstance(v, int | str) and not isinstance(v, bool) for v in values):
        raise ValueError("not a page cursor")
    return values


class CursorField(forms.CharField):
    """Where the next page starts: opaque to the user, checked for shape here."""

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(required=False, max_length=2000, **kwargs)

    def clean(self, value: Any) -> list[int | str] | None:  # type: ignore[override]
        text = super().clean(value)
        if not text:
            return None
        try:
            return decode_cursor(text)
        except ValueError:
            raise forms.ValidationError(
                "Not a page cursor; follow the page's own “next” link or drop the parameter."
            ) from None


class StrictQueryForm(forms.Form):
    """Rejects query parameters the page does not know (a typo would otherwise be ignored)."""

    def __init__(self, data: QueryDict | None = None, **kwargs: Any) -> None:
        super().__init__(data, **kwargs)
        self._unknown = sorted(set(data or ()) - set(self.fields)) if data is not None else []

    def clean(self) -> dict[str, Any]:
        cleaned = super().clean() or {}
        if self._unknown:
            unknown = ", ".join(map(repr, self._unknown))
            known = ", ".join(sorted(self.fields)) or "none"
            raise forms.ValidationError(f"Unknown parameter {unknown}; this page takes: {known}.")
        return cleaned

    def messages(self) -> list[str]:
        """Every error as one sentence naming its parameter."""
        out = []
        for name, errors in self.errors.items():
            for error in errors:
                out.append(str(error) if name == "__all__" else f"{name}: {error}")
        return out


class _SessionFilters(StrictQueryForm):
    gateway = forms.SlugField(required=False, max_length=64)
    agent = forms.CharField(required=False, max_length=64)
    channel = forms.CharField(required=False, max_length=64)
    phase = forms.ChoiceField(required=False, choices=[("", "any"), *((p, p) for p in PHASES)])
    q = forms.CharField(required=False, max_length=200, label="Key contains")
    refresh = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "off"), *((str(s), str(s)) for s in REFRESH_CHOICES)],
    )
    after = CursorField()


class SessionFilterForm(_SessionFilters):
    """The sessions page's filters; they live in the URL so a view can be bookmarked."""

    flagged = forms.BooleanField(required=False)
    sort = forms.ChoiceField(required=False, choices=[("", "default"), *SORTS.items()])


class StuckFilterForm(_SessionFilters):
    """The stuck tab: the same filters; always flagged only, always worst first."""


class WarningsForm(StrictQueryForm):
    """The warnings page: which gateway, how far back."""

    gateway = forms.SlugField(required=False, max_length=64)
    hours = forms.IntegerField(required=False, min_value=1, max_value=24 * 30)


class TimelineForm(StrictQueryForm):
    """A session's page: how much of its timeline to show."""

    limit = forms.IntegerField(required=False, min_value=1, max_value=2000)


class ActionForm(forms.Form):
    """The confirmation dialog of one action on one session."""

    reason = forms.CharField(
        max_length=1000,
        strip=True,
        widget=forms.Textarea(attrs={"rows": 2, "required": True}),
        error_messages={"required": "Say why: the reason goes into the audit log."},
    )
    expect_run_id = forms.CharField(required=False, max_length=128, widget=forms.HiddenInput)
    # One per rendered dialog: a second submit of the same dialog does nothing new.
    submission = forms.UUIDField(widget=forms.HiddenInput)


class BulkActionForm(ActionForm):
    """A bulk action's dialog: the targets as listed (session pk and the run seen)."""

    targets = forms.CharField(max_length=20000, widget=forms.HiddenInput)
    confirm_count = forms.IntegerField(required=False, min_value=0)

    def clean_targets(self) -> list[tuple[int, str]]:
        pairs = []
        for part in self.cleaned_data["targets"].split(","):
            pk, _, run_id = part.partition(":")
            if not pk.isdigit() or not run_id:
                raise forms.ValidationError(f"Not a target: {part!r}; reopen the dialog.")
            pairs.append((int(pk), run_id))
        return pairs
