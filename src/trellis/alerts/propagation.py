"""Propagation up the asset tree: which nodes see an alert of a device.

An alert is visible at every node above its device (nearest first), so a site's inbox
holds its pumps' alerts and an asset's holds its sensors'. The hierarchy lives behind
one function, ``ancestors(tenant, device_id) -> list[str]``, handed to
:class:`~trellis.alerts.service.AlertService`. The platform passes one that walks the
Brick asset tree (``SemanticModel.ancestors``: the equipment and places above the
device's points) and then adds what the device registry records (``registry_ancestors``:
the ``asset`` attribute, then the ``site``).
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa

from trellis.store.metadata import devices

__all__ = ["Ancestors", "registry_ancestors"]

#: ``(tenant, device_id) -> [parent, grandparent, …]``; an unknown device has none.
Ancestors = Callable[[str, str], list[str]]

_DEVICE = sa.select(devices.c.site, devices.c.attributes).where(
    devices.c.tenant == sa.bindparam("p_tenant"), devices.c.id == sa.bindparam("p_id")
)


def registry_ancestors(engine: sa.Engine) -> Ancestors:
    """The hierarchy the device registry records: ``attributes["asset"]``, then ``site``."""

    def ancestors(tenant: str, device_id: str) -> list[str]:
        with engine.connect() as connection:
            row = connection.execute(_DEVICE, {"p_tenant": tenant, "p_id": device_id}).first()
        if row is None:
            return []
        chain: list[str] = []
        asset = (row.attributes or {}).get("asset")
        if isinstance(asset, str) and asset.strip():
            chain.append(asset.strip()[:128])
        if row.site and row.site not in chain:
            chain.append(row.site)
        return chain

    return ancestors
