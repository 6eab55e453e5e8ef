"""Support package for the course *GPT-2 from scratch*.

- `c1p1.config.Config`: GPT-2 small's sizes.
- `c1p1.environment.check_environment()`: one OK or FAIL line per pinned requirement.
- `c1p1.reference.load_reference()`: the one GPT-2 reference every notebook and check uses.
- `c1p1.course_device()`: the course's one device (what `reference.device` is), for notebooks without GPT-2.
- `c1p1.parts`: the course's canonical components, generated from the solution notebooks.
"""

from c1p1.config import Config

__all__ = ["Config", "check_environment", "course_device", "load_reference"]


def __getattr__(name: str):
    # Imported on first use, so that `python -m c1p1.environment` works even when torch is missing.
    if name == "load_reference":
        from c1p1.reference import load_reference

        return load_reference
    if name == "course_device":
        from c1p1.reference import pick_device

        return pick_device
    if name == "check_environment":
        from c1p1.environment import check_environment

        return check_environment
    raise AttributeError(f"module 'c1p1' has no attribute {name!r}")
