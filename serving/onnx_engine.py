"""ONNX Runtime as the forward pass of `serving.classifier` for the passes where it is faster.

`training.onnx_export` writes the graph at `import_model` time into the Bento model
(`BENTO_ONNX_FILE`); here it is only run. The session uses all of ONNX Runtime's graph
optimizations and the model process's thread budget (one intra-op thread per process by
default: two processes on two cores; more threads per process only contend).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

# The graph's names, shared with the exporter.
ONNX_INPUTS = ("input_ids", "attention_mask")
ONNX_OUTPUTS = ("logits", "mean_hidden")


class OnnxEngine:
    """One ONNX Runtime session over the exported graph: padded rows in, logits (and the
    mean-pooled last hidden state) out."""

    def __init__(self, path: str | Path, num_threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        # 0 = ONNX Runtime's default (one thread per core), as torch's 0 means in the classifier.
        options.intra_op_num_threads = max(0, num_threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # No spinning between passes: the batcher's idle waits would burn the other process's core.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(path), sess_options=options, providers=["CPUExecutionProvider"]
        )
        self.path = Path(path)

    def run(
        self, ids: np.ndarray, mask: np.ndarray, with_embeddings: bool
    ) -> tuple[np.ndarray, np.ndarray | None]:
        # The export drops the NaN guards after each attention softmax
        # (`training.onnx_export.drop_nan_guards`): a row with no first token would answer NaN.
        if mask.shape[1] == 0 or not mask[:, 0].all():
            raise ValueError("the ONNX engine needs right-padded rows of at least one token each")
        outputs = list(ONNX_OUTPUTS) if with_embeddings else [ONNX_OUTPUTS[0]]
        result = self.session.run(outputs, {ONNX_INPUTS[0]: ids, ONNX_INPUTS[1]: mask})
        logits = np.asarray(result[0], dtype=np.float32)
        mean = np.asarray(result[1], dtype=np.float32) if with_embeddings else None
        return logits, mean
