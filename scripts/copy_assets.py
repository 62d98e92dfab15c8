"""Copy the dashboard's browser libraries from ``node_modules`` into the package.

The JavaScript comes from npm, pinned by ``package.json`` and ``package-lock.json``,
and is never committed: ``make assets`` runs ``npm ci --ignore-scripts`` and then this
script, which copies the few plain-``<script>`` dist files the pages load into
``src/trellis/ui/static/vendor/`` (git-ignored). Standard library only, so it runs
before anything else is installed.

Usage: ``python scripts/copy_assets.py [--check]``; ``--check`` only reports what is
missing and exits 1 when anything is.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
VENDOR = ROOT / "src" / "trellis" / "ui" / "static" / "vendor"

#: ``node_modules``-relative source → file name under ``vendor/``. The file names are
#: what the templates load (``trellis.ui.routes.VENDOR_FILES`` lists the same ones).
ASSETS: dict[str, str] = {
    "htmx.org/dist/htmx.min.js": "htmx.min.js",
    "uplot/dist/uPlot.iife.min.js": "uPlot.iife.min.js",
    "uplot/dist/uPlot.min.css": "uPlot.min.css",
    "echarts/dist/echarts.min.js": "echarts.min.js",
    "drawflow/dist/drawflow.min.js": "drawflow.min.js",
    "drawflow/dist/drawflow.min.css": "drawflow.min.css",
}

INSTALL_HINT = "run `npm ci --ignore-scripts --no-audit --no-fund` in the repository root first"


def main(argv: list[str]) -> int:
    """Copy every asset, or report the missing ones; return the exit status."""
    check_only = "--check" in argv
    if not NODE_MODULES.is_dir():
        print(f"copy_assets: {NODE_MODULES} does not exist; {INSTALL_HINT}", file=sys.stderr)
        return 1
    missing = [source for source in ASSETS if not (NODE_MODULES / source).is_file()]
    if missing:
        names = ", ".join(missing)
        print(
            f"copy_assets: missing in node_modules: {names}; "
            f"{INSTALL_HINT} (package-lock.json pins the versions)",
            file=sys.stderr,
        )
        return 1
    if check_only:
        return 0
    VENDOR.mkdir(parents=True, exist_ok=True)
    for source, target in ASSETS.items():
        shutil.copyfile(NODE_MODULES / source, VENDOR / target)
        print(f"copied {source} -> {(VENDOR / target).relative_to(ROOT)}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
