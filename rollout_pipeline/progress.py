"""Progress bars for the commands that can take more than a few seconds (tqdm, on stderr).

Shown on a terminal only: piped or captured output stays as it was (tqdm's ``disable=None``), and the bar is
cleared when it ends, so the command's own lines are what remains.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator


@contextlib.contextmanager
def progress_bar(total: int | None, description: str, unit: str = "it") -> Iterator[Callable[[int], None]]:
    """A bar of ``total`` ``unit``s; yields ``advance(n)``."""
    from tqdm import tqdm

    bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True, file=sys.stderr, disable=None,
               leave=False, dynamic_ncols=True, mininterval=0.2)
    try:
        yield bar.update
        if not bar.disable:
            bar.refresh()  # draw the end before the bar is cleared (a busy machine may have skipped it)
    finally:
        bar.close()
