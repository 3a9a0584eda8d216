"""The scale sweep of the knowledge pipeline (``benchmarks/bench_scale_sweep.py`` runs it)."""
