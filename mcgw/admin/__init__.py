"""The admin HTTP server (health, readiness, metrics, ``/api/status``) and what it serves."""

from .metrics import ControllerMetrics
from .server import AdminServer
from .status_view import LISTED_KINDS, not_ready_reason, status_document

__all__ = ["LISTED_KINDS", "AdminServer", "ControllerMetrics", "not_ready_reason", "status_document"]
