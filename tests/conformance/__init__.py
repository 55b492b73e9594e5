"""The upstream Gateway API conformance suite against mcgw on the test bed (``make conformance``).

See conformance/README.md; the harness is :mod:`tests.conformance.harness`.
"""
