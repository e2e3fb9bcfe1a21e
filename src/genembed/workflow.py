"""Glue for the Snakemake rule scripts: logging to the rule's log and one-line errors."""

from __future__ import annotations

import logging
import sys
from typing import Any, Callable

from .errors import GenembedError


def run_logged(log_path: str, step: Callable[[], Any]) -> None:
    """Run ``step`` with logging to ``log_path``; a GenembedError becomes one line and exit 1."""
    logging.basicConfig(filename=log_path, level=logging.INFO, force=True,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        step()
    except GenembedError as exc:
        logging.getLogger("genembed").error("%s", exc)
        print(f"genembed: error: {exc}", file=sys.stderr)
        sys.exit(1)
