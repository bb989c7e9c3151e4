"""Fine-tuning (`train`, `finetune`), the MLflow Model Registry (`registry`, the only module
that talks to it) and the import of a registered version into the BentoML store with its
drift reference (`import_model`, `reference`)."""
