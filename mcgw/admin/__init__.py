"""The admin HTTP server (health, readiness, metrics, ``/api/status``) and what it serves."""

from mcgw.admin.metrics import ControllerMetrics
from mcgw.admin.server import AdminServer
from mcgw.admin.status_view import not_ready_reason, status_document
from mcgw.objects.kinds import LISTED_KINDS

__all__ = ["LISTED_KINDS", "AdminServer", "ControllerMetrics", "not_ready_reason", "status_document"]
