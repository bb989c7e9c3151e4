"""The shared core: settings models and their loader, data reading, the label names,
calibration and classification metrics. Every other package may import it; it imports none
of them (checked by `lint-imports`)."""
