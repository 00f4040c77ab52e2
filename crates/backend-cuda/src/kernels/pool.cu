// pool kernels: written in the next commits.
