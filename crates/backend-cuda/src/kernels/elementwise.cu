// elementwise kernels: written in the next commits.
