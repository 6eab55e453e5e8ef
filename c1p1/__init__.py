"""Support package for the course *GPT-2 from scratch*.

- `c1p1.config.Config`: GPT-2 small's sizes.
- `c1p1.reference.load_reference()`: the one GPT-2 reference every notebook and check uses.
- `c1p1.parts`: the course's canonical components, generated from the solution notebooks.
"""

from c1p1.config import Config
from c1p1.reference import load_reference

__all__ = ["Config", "load_reference"]
