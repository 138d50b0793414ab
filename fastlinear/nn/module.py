"""`Module`, the base of every network building block, is defined in `fastlinear.module` (so that
`fastlinear.Linear` can be one without importing the rest of `fastlinear.nn`)."""

from ..module import Module

__all__ = ["Module"]
