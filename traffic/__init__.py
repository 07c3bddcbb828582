"""Egress gateways, the traffic they report, and the stale grants that traffic reveals."""
