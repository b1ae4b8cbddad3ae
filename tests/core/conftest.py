"""Hypothesis profiles for the engine's property tests.

`fast` (the default) keeps tests/core under 20 seconds; `thorough` tries far more cases:
`python -m pytest tests/core --hypothesis-profile=thorough` or `EASEL_HYPOTHESIS=thorough`.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

COMMON = {"deadline": None, "suppress_health_check": list(HealthCheck)}
settings.register_profile("fast", max_examples=150, **COMMON)
settings.register_profile("thorough", max_examples=3000, **COMMON)
settings.load_profile(os.environ.get("EASEL_HYPOTHESIS", "fast"))
