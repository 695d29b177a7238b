"""Fixtures and settings shared by all test layers."""

from hypothesis import settings

# Hypothesis's per-example deadline (200 ms) fails properties on a loaded 2-core CI machine
# for reasons that are not the property's; every property still runs its examples.
settings.register_profile("okr", deadline=None)
settings.load_profile("okr")
