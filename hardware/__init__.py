"""The accelerator catalog: GPUs and their fabrics, as data with sources."""
from hardware.accelerator import Accelerator
from hardware.catalog import UnknownAccelerator, catalog, get_accelerator

__all__ = ["Accelerator", "UnknownAccelerator", "catalog", "get_accelerator"]
