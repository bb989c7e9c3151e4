"""The Gradio web UI mounted on the API service at /ui (see docs/ui.md)."""
