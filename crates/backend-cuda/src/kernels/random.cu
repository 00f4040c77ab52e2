// random kernels: written in the next commits.
