// conv kernels: written in the next commits.
