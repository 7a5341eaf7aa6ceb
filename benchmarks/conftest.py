"""Benchmarks compare against a reference measured in the same run and save ratios."""
