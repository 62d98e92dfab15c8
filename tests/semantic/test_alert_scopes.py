"""Alerts propagate up the Brick asset tree: a building sees its air handler's alerts."""

from __future__ import annotations

from pathlib import Path

from trellis.core.clock import now_ms
from trellis.core.config import Settings, SimSettings
from trellis.core.types import AlertSeverity, Device
from trellis.platform import Platform
from trellis.semantic import parse_turtle

B2 = (Path(__file__).parent.parent / "data" / "brick" / "building-b2.ttl").read_text()


def test_an_alert_is_visible_at_every_node_above_its_device(tmp_data_dir: Path) -> None:
    """The semantic tree gives the nearest equipment first, then its places by the tree
    and by hasLocation; the registry's site comes after; an unplaced device keeps only
    the registry's scopes."""
    platform = Platform(
        Settings(data_dir=tmp_data_dir, sim=SimSettings(pumps=0, rooms=0, fault_device=None))
    )
    try:
        tenant = platform.tenant
        nodes, relations = parse_turtle(B2)
        platform.semantic.put(tenant, nodes, relations, replace=True)
        platform.registry.register(Device(tenant, "ahu-1", "pump", site="north"))
        platform.registry.register(Device(tenant, "loose-1", "pump", site="north"))

        scopes = platform.semantic.ancestors(tenant, "ahu-1")
        assert scopes[0] == "AHU-1"
        assert {"B2-mech", "B2-F1", "B2", "riverside"} <= set(scopes)
        assert scopes.index("B2-F1") < scopes.index("B2") < scopes.index("riverside")
        assert platform.semantic.ancestors(tenant, "loose-1") == []

        def raise_for(device: str) -> int:
            alert = platform.alerts.raise_alert(
                tenant=tenant,
                device=device,
                rule="hot",
                type="threshold",
                severity=AlertSeverity.MAJOR,
                message="too hot",
                value=30.0,
                at_ms=now_ms(),
                metric="sat",
            )
            return alert.id

        ahu, loose = raise_for("ahu-1"), raise_for("loose-1")
        assert [a.id for a in platform.alerts.find(tenant, under="B2")] == [ahu]
        assert [a.id for a in platform.alerts.find(tenant, under="AHU-1")] == [ahu]
        assert {a.id for a in platform.alerts.find(tenant, under="north")} == {ahu, loose}
        assert platform.alerts.find(tenant, under="zone-201") == []
    finally:
        platform.close()
