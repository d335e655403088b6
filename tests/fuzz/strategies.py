"""Hypothesis strategies and the settings every fuzz test shares.

``RUNBOARD_FUZZ_EXAMPLES`` sets the examples per test (300 by default: a few
thousand cases over the folder in CI, in reasonable time; raise it locally).
"""

from __future__ import annotations

import math
import os
from typing import Any

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

EXAMPLES = int(os.environ.get("RUNBOARD_FUZZ_EXAMPLES", "300"))
fuzz = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# Values a buggy or hostile peer sends: the extremes each layer must bound.
nasty_numbers = st.sampled_from(
    [
        math.inf,
        -math.inf,
        math.nan,
        1e300,
        -1e300,
        1e17,
        10**20,
        2**63,
        -(2**63) - 1,
        -1,
        0,
        2**53,
        4_102_444_800_000,
        1.5,
    ]
)
nasty_strings = st.one_of(
    st.sampled_from(["", "\x00", "a\x00b", "\ud800", "x" * 129, "k" * 513, "é" * 300, "🙂" * 70]),
    st.text(max_size=40),
)
scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.floats(allow_nan=True, allow_infinity=True),
    nasty_numbers,
    nasty_strings,
)
json_values: st.SearchStrategy[Any] = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=12), inner, max_size=4)
    ),
    max_leaves=12,
)
# Text an HTTP client can send (no lone surrogates: they are not UTF-8).
http_text = st.text(alphabet=st.characters(exclude_categories=["Cs"]), max_size=60)


def mutated(base: dict[str, Any], keep: tuple[str, ...] = ()) -> st.SearchStrategy[dict[str, Any]]:
    """``base`` with some fields replaced by anything, some dropped, some added."""
    fields = [k for k in base if k not in keep]

    @st.composite
    def build(draw: st.DrawFn) -> dict[str, Any]:
        out = dict(base)
        for key in draw(st.lists(st.sampled_from(fields), max_size=3, unique=True)):
            if draw(st.booleans()):
                out[key] = draw(json_values)
            else:
                del out[key]
        if draw(st.integers(0, 9)) == 0:
            out[draw(st.text(max_size=8))] = draw(json_values)
        return out

    return build()
