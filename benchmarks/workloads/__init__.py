"""The benchmark workloads W1..W5; each function is one job that ``benchmarks/run.py`` runs
in a fresh process (so peak RSS is per tool) and that returns a JSON-able dict."""
