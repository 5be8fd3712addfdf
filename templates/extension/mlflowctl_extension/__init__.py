"""The MLflow Tracking Server Extension for Posit Connect, managed by mlflowctl."""

EXTENSION_VERSION = "0.1.0"
