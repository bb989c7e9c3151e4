"""Uploaded files: the batch tab reads only files that Gradio itself stored for this server.

A Gradio event names its input files by server path (a `gradio.FileData`). The page only ever
sends paths that the upload route returned, but any client can send any path. Gradio 6 checks
those paths only for a Blocks that was `launch()`ed, and BentoML mounts the Blocks unlaunched, so
without this check the batch tab would copy and read any CSV the process can read.

`is_confined` is the rule; `accept_only_uploads` applies it to the batch tab's file input before
Gradio copies or reads anything, and `ui.app.UIHandlers` applies it again before a file is read.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from pathlib import Path
from typing import TypeVar

import gradio as gr
from gradio.utils import get_upload_folder

logger = logging.getLogger("sentiment.ui")
FileComponent = TypeVar("FileComponent", bound=gr.File)

FOREIGN_FILE = (
    "This file was not uploaded through this page, so it is not read: "
    "upload the CSV file again with the file box."
)


def upload_roots() -> tuple[Path, ...]:
    """Where Gradio stores uploads and its cached copies ($GRADIO_TEMP_DIR, else $TMPDIR/gradio)."""
    return (Path(get_upload_folder()),)


def is_confined(
    path: str | os.PathLike[str] | None, roots: Iterable[str | os.PathLike[str]]
) -> bool:
    """True when `path` is an absolute path to a place strictly inside one of `roots`, once `..`
    and every symbolic link (in the path and in the roots) are resolved. URLs, relative paths,
    empty strings and a root itself are never confined."""
    if path is None:
        return False
    text = os.fspath(path)
    if not text or "\x00" in text or "://" in text or text.startswith("//"):
        return False
    candidate = Path(text)
    if not candidate.is_absolute():
        return False
    try:
        resolved = candidate.resolve()
    except (OSError, RuntimeError):  # a symlink loop, an unreadable folder
        return False
    for root in roots:
        try:
            base = Path(root).resolve()
        except (OSError, RuntimeError):
            continue
        if resolved != base and resolved.is_relative_to(base):
            return True
    return False


def refuse_foreign(url_or_file_path: str | Path | None) -> None:
    """Raise `gr.Error(FOREIGN_FILE)` for a path outside Gradio's upload folder."""
    if url_or_file_path is not None and not is_confined(str(url_or_file_path), upload_roots()):
        logger.warning("refused a file the server did not store: %r", str(url_or_file_path))
        raise gr.Error(FOREIGN_FILE, print_exception=False)


def accept_only_uploads(component: FileComponent) -> FileComponent:
    """Make a file input refuse, before anything reads it, a path Gradio did not store.

    Gradio calls the component's `*move_resource_to_block_cache` for each FileData of an event
    before it copies (reads) the file into its cache; these wrap them, on this one component,
    with `refuse_foreign`, whose `gr.Error` the page shows as an error message. (A subclass
    of gr.File would do the same, but Gradio writes a .pyi stub next to the module of every
    component class it sees defined, in the source tree and in the Bento.)
    """
    copy_async = component.async_move_resource_to_block_cache
    copy = component.move_resource_to_block_cache

    async def async_move_resource_to_block_cache(url_or_file_path: str | Path | None) -> str | None:
        refuse_foreign(url_or_file_path)
        return await copy_async(url_or_file_path)

    def move_resource_to_block_cache(url_or_file_path: str | Path | None) -> str | None:
        refuse_foreign(url_or_file_path)
        return copy(url_or_file_path)

    vars(component).update(
        async_move_resource_to_block_cache=async_move_resource_to_block_cache,
        move_resource_to_block_cache=move_resource_to_block_cache,
    )
    return component
