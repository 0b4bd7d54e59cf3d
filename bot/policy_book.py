"""The policies tickets run under: the current file and every stored version."""

from __future__ import annotations

from bot.domain.policy import Policy, policy_from_document
from models import PolicyVersion


class PolicyBook:
    """Keeps the current policy stored and finds the one a ticket was opened under."""

    def __init__(self, current: Policy) -> None:
        self.current = current
        self._by_digest: dict[str, Policy] = {current.digest: current}

    async def store_current(self) -> None:
        """Record the current policy so tickets opened under it can find it later."""
        await PolicyVersion.get_or_create(
            digest=self.current.digest,
            defaults={"version": self.current.version, "document": self.current.document()},
        )

    async def get(self, digest: str) -> Policy:
        """The policy with this digest (from memory, else from the database)."""
        policy = self._by_digest.get(digest)
        if policy is None:
            stored = await PolicyVersion.get(digest=digest)
            policy = policy_from_document(stored.document)
            self._by_digest[digest] = policy
        return policy
