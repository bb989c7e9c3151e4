"""Load, memory and quality benchmarks that report numbers (not timed tests)."""
