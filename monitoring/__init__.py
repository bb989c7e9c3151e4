"""Monitoring of the served model: a BentoML monitor with Prometheus metrics and drift tests.

Light to import: the BentoML monitor class lives in `monitoring.monitor`, the entry points
for services and the UI in `monitoring.hook`.
"""

from monitoring.drift import DriftDetector
from monitoring.reference import DriftReference, build_reference

__all__ = ["DriftDetector", "DriftReference", "build_reference"]
