"""Monitoring of the served model: the BentoML monitor hook (`hook`, `monitor`), Prometheus
metrics (`metrics`), drift statistics and tests (`stats`, `drift`, `window`) and the drift
reference format (`reference`). It never imports training, evaluation, deploy or serving's
HTTP layer.

Light to import: the BentoML monitor class lives in `monitoring.monitor`, the entry points
for services and the UI in `monitoring.hook`.
"""

from monitoring.drift import DriftDetector
from monitoring.reference import DriftReference, build_reference

__all__ = ["DriftDetector", "DriftReference", "build_reference"]
