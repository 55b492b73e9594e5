"""Gateway API semantics: pure functions from typed objects to conditions and attachment decisions."""

CONTROLLER_NAME = "mcgw.io/gateway-controller"
