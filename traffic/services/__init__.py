"""Writers of the traffic app: gateways, ingestion, stale revocation."""
