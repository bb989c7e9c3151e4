"""Offline bulk scoring: a file of texts scored with a registered MLflow model on Spark."""
