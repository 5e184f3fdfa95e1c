"""Shared test settings: Hypothesis profile sized for the 2-core CI machine."""

from hypothesis import HealthCheck, settings

settings.register_profile("ci", max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("ci")
