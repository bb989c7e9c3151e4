"""What the UI needs from the running service, as a small interface a test can fake.

In `bentoml serve` the Gradio app runs inside the service's worker process and event loop, so
the backend reaches the live SentimentAPI instance through `bentoml.get_current_service()`
and awaits the same `classify` that `/predict` uses: one model in memory, shared batching.
Files over the batch tab's inline limit go to the service's `score_file`, the code the
`/predict_file` task runs. A user's "right / wrong" answer on a prediction goes to the
service's `accept_feedback`, the code behind its feedback endpoint, under the prediction id
that `remember` gave the prediction. "Why did it say that?" goes to the service's
`explanations`, the code behind `/explain`, which runs in a model process of its own.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
from collections.abc import Callable
from typing import Any, Protocol


class UIBackend(Protocol):
    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per-text dicts: label, confidence, probabilities{negative,positive}, n_tokens, ..."""
        ...

    async def score_file(
        self,
        job_id: str,
        data: bytes,
        suffix: str,
        text_column: str | None,
        on_progress: Callable[[int, int], None],
    ) -> dict[str, Any]:
        """A whole file scored by the service's file code: {"rows", "scored", "predictions":
        [{"row", "sentiment", "confidence"}], "errors": [{"row", "error"}], ...}, calling
        `on_progress(done, rows)` after each batch. ValueError (one line) for a file it
        cannot use, or when too many files are being scored."""
        ...

    async def model_info(self) -> dict[str, Any]: ...

    async def monitoring_summary(self) -> dict[str, Any] | None:
        """The monitoring summary, or None where monitoring is not available."""
        ...

    async def log_predictions(
        self, texts: list[str], raw: list[dict[str, Any]], latency_s: float
    ) -> bool:
        """Record predictions for monitoring; False where monitoring is not available."""
        ...

    async def remember(self, texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        """One prediction id per text (opaque strings), kept in the service's feedback store
        when that is on, so feedback can name the prediction it is about."""
        ...

    def feedback_enabled(self) -> bool:
        """Whether the service keeps a feedback store (False: no right / wrong control)."""
        ...

    async def send_feedback(self, prediction_id: str, label: str) -> dict[str, int]:
        """The true label of a remembered prediction: {"accepted": n, "unknown": m}, where
        unknown counts ids the store no longer (or never) held. ValueError (one line) for an
        item the service refuses."""
        ...

    def explain_enabled(self) -> bool:
        """Whether the service explains predictions (False: no Explain controls)."""
        ...

    async def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        """Per text {"sentiment", "confidence", "probabilities", "words": [{"word",
        "attribution"}]}: the words in text order, each attribution signed towards the
        predicted label. ValueError (one line) with a `status` where the service refuses:
        404 explanations off, 413 too many texts, 429 too many in progress; any other
        exception where the explaining process failed."""
        ...


def _current_service() -> Any:
    import bentoml

    return bentoml.get_current_service()


async def _resolve(value: Any) -> Any:
    return await value if inspect.isawaitable(value) else value


class ServiceBackend:
    """The live service (found at call time, never at import) and `monitoring.hook`."""

    def __init__(
        self,
        service: Callable[[], Any] = _current_service,
        monitoring_module: str = "monitoring.hook",
    ) -> None:
        self._service = service
        self._monitoring_module = monitoring_module

    def _hook(self) -> Any | None:
        try:
            return importlib.import_module(self._monitoring_module)
        except ImportError:
            return None

    async def predict(self, texts: list[str]) -> list[dict[str, Any]]:
        result: list[dict[str, Any]] = await self._service().classify(texts)
        return result

    async def score_file(
        self,
        job_id: str,
        data: bytes,
        suffix: str,
        text_column: str | None,
        on_progress: Callable[[int, int], None],
    ) -> dict[str, Any]:
        result: dict[str, Any] = await self._service().score_file(
            job_id, data, suffix, text_column, on_progress
        )
        return result

    async def model_info(self) -> dict[str, Any]:
        result: dict[str, Any] = await self._service().model_info()
        return result

    async def monitoring_summary(self) -> dict[str, Any] | None:
        hook = self._hook()
        if hook is None or not hasattr(hook, "summary"):
            return None
        # summary() may re-run the drift tests: keep that CPU work off the event loop.
        summary: dict[str, Any] = await _resolve(await asyncio.to_thread(hook.summary))
        return summary

    async def log_predictions(
        self, texts: list[str], raw: list[dict[str, Any]], latency_s: float
    ) -> bool:
        hook = self._hook()
        if hook is None or not hasattr(hook, "log_predictions"):
            return False
        tag = (await self.model_info()).get("tag")
        # Cheap by contract (it only buffers the columns), so it runs on the loop.
        await _resolve(hook.log_predictions(texts, raw, latency_s, model_tag=tag))
        return True

    async def remember(self, texts: list[str], raw: list[dict[str, Any]]) -> list[str]:
        # A plain method (it only files the predictions under fresh ids): runs on the loop.
        ids: list[str] = await _resolve(self._service().remember(texts, raw))
        return ids

    def feedback_enabled(self) -> bool:
        enabled = getattr(self._service(), "feedback_enabled", False)
        return bool(enabled() if callable(enabled) else enabled)

    async def send_feedback(self, prediction_id: str, label: str) -> dict[str, int]:
        items = [{"id": prediction_id, "label": label}]
        result: dict[str, int] = await _resolve(self._service().accept_feedback(items))
        return result

    def explain_enabled(self) -> bool:
        return bool(getattr(self._service(), "explain_enabled", False))

    async def explain(self, texts: list[str]) -> list[dict[str, Any]]:
        # The service runs it in its explaining process, off the event loop.
        result: list[dict[str, Any]] = await self._service().explanations(texts)
        return result
