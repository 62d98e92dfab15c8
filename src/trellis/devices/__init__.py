"""Devices: the registry (tenant → device) and the device models devices refer to."""

from trellis.devices.models import BUILTIN_MODELS, DeviceModel, MetricSpec
from trellis.devices.registry import DeviceRegistry

__all__ = ["BUILTIN_MODELS", "DeviceModel", "DeviceRegistry", "MetricSpec"]
