// movement kernels: written in the next commits.
