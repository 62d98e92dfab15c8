"""The public surface of the ``trellis`` package is deliberate."""

from __future__ import annotations

import importlib
import pkgutil

import trellis


def test_all_lists_exactly_the_public_names() -> None:
    """Every public attribute of ``trellis`` is in ``__all__``, and nothing else is."""
    public = {
        name
        for name in dir(trellis)
        if not name.startswith("_") and not isinstance(getattr(trellis, name), type(trellis))
    }
    assert public | {"__version__"} == set(trellis.__all__)


def test_every_package_declares_its_exports() -> None:
    """Each module under ``trellis`` defines ``__all__``, and every listed name exists."""
    for module_info in pkgutil.walk_packages(trellis.__path__, "trellis."):
        if ".migrations" in module_info.name:
            continue
        module = importlib.import_module(module_info.name)
        exported = getattr(module, "__all__", None)
        if module_info.ispkg and exported is None and module.__doc__:
            continue
        assert exported is not None, f"{module_info.name} has no __all__"
        missing = [name for name in exported if not hasattr(module, name)]
        assert not missing, f"{module_info.name}.__all__ names missing attributes {missing}"
