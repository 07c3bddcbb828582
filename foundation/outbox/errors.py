"""How a handler says whether a failed delivery is worth another try."""

from __future__ import annotations


class DeliveryError(Exception):
    """A delivery failed. ``permanent=True`` parks the row at once (retrying cannot help:
    a refused recipient, a malformed payload); otherwise the relay retries with backoff.
    """

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent
