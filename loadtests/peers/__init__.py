"""What a user would pick instead of the platform, serving the same model: `make benchmark`'s
peers (Ray Serve with `@serve.batch`, BentoML's own `batchable=True` API)."""
