"""Build hook: compile the C decoder of data contracts, or go on without it.

``src/trellis/contracts/_native.c`` becomes ``trellis/contracts/_native*.so`` next to
its source (so an editable install imports it too) and is shipped in the wheel. No C
compiler, or a failed compile, prints why and builds a pure-Python package: contracts
then decode with their generated Python functions (trellis.contracts.accelerator).
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

SOURCE = Path("src/trellis/contracts/_native.c")
# -ffp-contract=off: ``v * scale + offset`` rounds twice, exactly as Python computes it.
FLAGS = ["-O2", "-ffp-contract=off", "-Wall", "-Wno-unused-parameter"]


class NativeDecoderHook(BuildHookInterface):  # type: ignore[type-arg]
    """Compiles the extension in place before the wheel (or editable wheel) is built."""

    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        root = Path(self.root)
        try:
            built = _compile(root)
        except Exception as exc:  # any failure means: ship pure Python
            print(
                f"trellis: the C decoder of data contracts was not built ({exc}); "
                "contracts will decode in Python",
                file=sys.stderr,
            )
            return
        print(f"trellis: built {built.relative_to(root)}", file=sys.stderr)
        build_data["pure_python"] = False
        build_data["infer_tag"] = True
        build_data["artifacts"].append(str(built.relative_to(root)))


def _compile(root: Path) -> Path:
    from setuptools import Distribution, Extension
    from setuptools.command.build_ext import build_ext

    extension = Extension(
        "trellis.contracts._native", [str(root / SOURCE)], extra_compile_args=FLAGS
    )
    with tempfile.TemporaryDirectory() as tmp:
        command = build_ext(Distribution({"name": "trellis-native", "ext_modules": [extension]}))
        command.build_lib = str(root / "src")
        command.build_temp = tmp
        command.ensure_finalized()
        command.run()
    return root / "src" / command.get_ext_filename("trellis.contracts._native")
