"""A Partner Center simulator: a real HTTPS server speaking Microsoft's documented billing APIs, for tests,
demos and benchmarks (see core.Simulator and `python -m devtools.simulator --help`)."""

from .app import LoggedRequest
from .core import Simulator
from .exports import ExportOptions
from .ledger import Expected

__all__ = ["Expected", "ExportOptions", "LoggedRequest", "Simulator"]
