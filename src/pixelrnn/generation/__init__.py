"""Generation: the raster-order sampling loop that every model's ``sample`` and ``complete``
run, and sampling in batches to a file."""

from .sampling import METHODS, complete, completion_rows, draw, sample
from .sample_file import sample_to_file

__all__ = ["METHODS", "complete", "completion_rows", "draw", "sample", "sample_to_file"]
