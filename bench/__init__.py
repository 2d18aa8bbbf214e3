"""memex's benchmarks: run each from the repository root as ``python -m bench.<script>``
(bench/README.md lists what each measures and its command)."""
