"""Messages the validation pass built, kept for sending so that they are not built twice."""

from __future__ import annotations

from batchmail.build.compose import Built, Composer
from batchmail.load.recipients import Recipient

# Kept up to this many bytes; beyond it messages are built again when sent, so memory stays
# flat however many recipients there are.
KEPT_BYTES = 8 * 1024 * 1024
_PER_RECIPIENT = 1024  # what a kept recipient's fields take, about, counted against the room


class KeptMessages:
    """The validation pass's messages, up to `room` bytes, each until it is sent."""

    def __init__(self, composer: Composer, room: int = KEPT_BYTES):
        self.composer = composer
        self._room = room
        self._kept: dict[int, Built] = {}

    def keep(self, built: Built) -> None:
        size = len(built.data) + _PER_RECIPIENT
        if size <= self._room:
            self._kept[built.recipient.seq] = built
            self._room -= size

    def recipient(self, seq: int) -> Recipient | None:
        """The recipient kept with its message, if it was."""
        built = self._kept.get(seq)
        return built.recipient if built is not None else None

    def message_bytes(self, recipient: Recipient, *, message_id: str, date: str) -> bytes:
        """The final message for a recipient: from what was kept, or built anew."""
        built = self._kept.pop(recipient.seq, None)
        if built is None:
            return self.composer.message_bytes(recipient, message_id=message_id, date=date)
        return self.composer.finish(built, message_id=message_id, date=date)
