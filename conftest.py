"""Settings for every test run, the notebooks' included.

`make test` runs notebooks with `--nbval-kernel-name c1p1-fork`: kernels forked from a process that has already
imported torch and TransformerLens and built the reference (c1p1/fork_kernel.py), about 7 s of CPU saved each.
"""

from c1p1 import fork_kernel

fork_kernel.use()
