"""Forms: every query string and POST body is validated here before use."""

from __future__ import annotations

from django import forms

from gateway_bridge.events import PHASES

REFRESH_CHOICES = (5, 10, 30)


class SessionFilterForm(forms.Form):
    """The sessions page's filters; they live in the URL so a view can be bookmarked."""

    gateway = forms.CharField(required=False, max_length=100)
    agent = forms.CharField(required=False, max_length=100)
    channel = forms.CharField(required=False, max_length=100)
    phase = forms.ChoiceField(required=False, choices=[("", "any"), *((p, p) for p in PHASES)])
    q = forms.CharField(required=False, max_length=200)
    flagged = forms.BooleanField(required=False)
    refresh = forms.TypedChoiceField(
        required=False,
        coerce=int,
        empty_value=None,
        choices=[("", "off"), *((str(s), str(s)) for s in REFRESH_CHOICES)],
    )
    page = forms.IntegerField(required=False, min_value=1)
