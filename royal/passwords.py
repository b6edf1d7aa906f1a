"""Password hashing with argon2id, off the event loop and with bounded concurrency.

Each hash costs tens of milliseconds of CPU and ``memory_cost`` KiB of RAM, so hashes run in
threads, at most ``concurrency`` at a time: a burst of logins queues instead of stalling every
stream on the event loop or exhausting memory. Parameters are at or above OWASP's argon2id
minimum (m=19 MiB, t=2, p=1); stored hashes with older parameters are rehashed at login.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

OWASP_MIN_MEMORY_KIB = 19456
OWASP_MIN_TIME_COST = 2


@dataclass(frozen=True)
class HashParameters:
    time_cost: int = RFC_9106_LOW_MEMORY.time_cost  # 3
    memory_cost: int = RFC_9106_LOW_MEMORY.memory_cost  # 64 MiB
    parallelism: int = RFC_9106_LOW_MEMORY.parallelism  # 4

    def __post_init__(self) -> None:
        if self.memory_cost < OWASP_MIN_MEMORY_KIB or self.time_cost < OWASP_MIN_TIME_COST:
            raise ValueError(
                f"argon2id parameters below OWASP's minimum (m={OWASP_MIN_MEMORY_KIB} KiB, "
                f"t={OWASP_MIN_TIME_COST}): {self}"
            )


class Passwords:
    """Hash and verify passwords; one instance per app."""

    def __init__(self, parameters: HashParameters, concurrency: int = 2) -> None:
        self._hasher = PasswordHasher(
            time_cost=parameters.time_cost,
            memory_cost=parameters.memory_cost,
            parallelism=parameters.parallelism,
            type=Type.ID,
        )
        self._slots = asyncio.Semaphore(concurrency)
        # Verifying against this when the user does not exist makes "no such user" cost the
        # same time as "wrong password", so timing does not reveal which usernames exist.
        # Made on first need: hashing at start-up would slow every CLI command.
        self._decoy: str | None = None

    async def hash(self, password: str) -> str:
        async with self._slots:
            return await asyncio.to_thread(self.hash_sync, password)

    def hash_sync(self, password: str) -> str:
        """Hash on the calling thread: for the CLI and tests, never on the event loop."""
        return self._hasher.hash(password)

    async def verify(self, stored_hash: str | None, password: str) -> bool:
        """True when ``password`` matches; a missing hash is checked against a decoy."""
        async with self._slots:
            return await asyncio.to_thread(self._verify, stored_hash, password)

    def _verify(self, stored_hash: str | None, password: str) -> bool:
        if stored_hash is None and self._decoy is None:
            self._decoy = self._hasher.hash("royal-decoy-password")
        try:
            self._hasher.verify(stored_hash or self._decoy or "", password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        return stored_hash is not None

    def needs_rehash(self, stored_hash: str) -> bool:
        return self._hasher.check_needs_rehash(stored_hash)
