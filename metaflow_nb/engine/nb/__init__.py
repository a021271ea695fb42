"""Pure Numba kernels: arrays and scalars in, arrays and scalars out.

Nothing in this package imports pandas or validates input; the wrappers one level up do.
"""
