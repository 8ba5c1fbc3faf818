"""Benchmarks (speed and accuracy), run by `make bench`. Not tests: nothing here asserts."""
