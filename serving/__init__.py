"""What the Bento runs for prediction: the HTTP contract and request guard (`http`), the
adaptive batcher (`batching`), where the model replicas run (`replicas`), one replica
(`replica`), the BentoML model store and its layout (`store`), the classifier with its int8
and packed forward passes (`classifier`, `int8`, `packed`). `service.py` wires them; nothing
here imports training, evaluation or deploy."""
