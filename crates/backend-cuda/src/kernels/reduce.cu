// reduce kernels: written in the next commits.
