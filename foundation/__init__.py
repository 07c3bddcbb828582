"""Shared building blocks every layer above may use: the outbox, signing keys,
problem documents, rate limits, the Actor, locks, upserts, request context and
the task scaffolding. Nothing here imports the portal's apps (import-linter
keeps it so; see .importlinter)."""
