"""Settings for every test run, the notebooks' included: the kernel spec `c1p1-fork` lives in tests/jupyter.

`make test` runs notebooks with `--nbval-kernel-name c1p1-fork`: kernels forked from a process that has already
imported torch and TransformerLens and built the reference (c1p1/fork_kernel.py), about 7 s of CPU saved each.
"""

import os
from pathlib import Path

os.environ["JUPYTER_PATH"] = os.pathsep.join(
    p for p in (str(Path(__file__).resolve().parent / "tests" / "jupyter"), os.environ.get("JUPYTER_PATH")) if p
)
