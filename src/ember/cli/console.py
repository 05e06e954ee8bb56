"""The Rich console the CLI's tables print to.

Rich lays a table out for an 80-column terminal when its output is not a terminal (a pipe, a
file, CI logs) and then shortens headers and cells to fit; a table printed there is read by
scripts and people alike, so it gets room to be whole.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console

PIPED_WIDTH = 200


def console(**options: Any) -> Console:
    from rich.console import Console

    if "width" not in options and not sys.stdout.isatty():
        options["width"] = PIPED_WIDTH
    return Console(**options)
