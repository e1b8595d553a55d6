"""Hypothesis profiles, chosen by ``HYPOTHESIS_PROFILE`` (loaded by conftest.py before any test module).

``ci`` (the default)
    ``derandomize=True, database=None``: every machine and every run tests the same cases (drawn from
    a seed derived from each test), and no local example database changes them.
``explore``
    Random cases, the local database on, and ``HYPOTHESIS_EXPLORE_SCALE`` (default 25) times as many
    examples: ``HYPOTHESIS_PROFILE=explore pytest tests/test_stream.py -k any_length``. A counterexample
    found this way goes into the test as an ``@example(...)`` so that ``ci`` checks it for good.

Example budgets: a test that needs its own budget writes ``@settings(budget(8), deadline=None)``
instead of ``@settings(max_examples=8, ...)``. An explicit ``max_examples=`` would pin the budget under
every profile (a test's settings override the profile's), so ``explore`` could not search further;
``budget(n)`` is the loaded profile itself (as the parent settings) with ``n`` examples scaled as the
profile scales Hypothesis' default of 100: ``n`` under ``ci``, ``25 n`` under ``explore``.
"""

from __future__ import annotations

import os

from hypothesis import settings

DEFAULT_EXAMPLES = 100  # Hypothesis' own default max_examples: the ci profile keeps it


def register() -> str:
    """Register the profiles and load the one ``HYPOTHESIS_PROFILE`` names (default ``ci``); returns its name."""
    scale = int(os.environ.get("HYPOTHESIS_EXPLORE_SCALE", "25"))
    settings.register_profile("ci", derandomize=True, database=None, max_examples=DEFAULT_EXAMPLES)
    settings.register_profile("explore", derandomize=False, max_examples=DEFAULT_EXAMPLES * scale)
    name = os.environ.get("HYPOTHESIS_PROFILE", "ci")
    settings.load_profile(name)  # an unknown name raises InvalidArgument, naming the registered ones
    return name


def budget(n: int) -> settings:
    """The loaded profile with a test's budget of ``n`` examples (at Hypothesis' default), scaled like it."""
    scaled = max(1, n * settings.default.max_examples // DEFAULT_EXAMPLES)
    return settings(settings.default, max_examples=scaled)
