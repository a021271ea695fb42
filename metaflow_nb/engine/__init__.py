"""The Numba core: kernels in ``engine.nb``, their Python wrappers and the metrics."""
