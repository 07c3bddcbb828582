"""The answer to "what may this user do here, and why not", shared by every object kind."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class Actions:
    """Each action maps to None (allowed) or the reason it is not."""

    denials: dict[str, str | None] = field(default_factory=dict)

    def allows(self, action: str) -> bool:
        return action in self.denials and self.denials[action] is None

    def why_not(self, action: str) -> str:
        return self.denials.get(action) or ""

    @property
    def allowed(self) -> list[str]:
        return [name for name, denial in self.denials.items() if denial is None]

    @property
    def refused(self) -> dict[str, str]:
        return {name: denial for name, denial in self.denials.items() if denial is not None}

    def __getitem__(self, action: str) -> bool:
        # Templates: {% if actions.approve %}; other names fall through to attributes.
        if action not in self.denials:
            raise KeyError(action)
        return self.allows(action)
