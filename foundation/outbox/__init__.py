"""The transactional outbox: every side effect is a row written with the change that causes it."""
