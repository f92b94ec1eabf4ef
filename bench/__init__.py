"""Benchmarks: each `python -m bench.<name>` prints a table and writes bench/results/<name>.json.

Every figure sits beside a reference measured in the same run, because these machines are
shared and noisy: compare medians and ratios, not absolute numbers from different runs.
"""
