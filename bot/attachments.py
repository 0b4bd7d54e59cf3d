"""Photos and files on tickets: accept, hold, attach, list and link them.

Whatever door a file comes through (the API, the app's media/get, the robot's
encrypted URL) it meets the same steps:

1. `accept`: the policy's size limit and an accepted type by content
   (bot/domain/attachments.py), then the bytes go to the content-addressed
   store (bot/filestore.py). A refused file is never stored.
2. `attach`: the rows (models.Attachment) and the ticket's history event
   ("attached", through the ledger: who may attach is the domain's rule) in
   one transaction; or `hold`: a photo sent in chat without a ticket number
   waits as a models.PendingAttachment for `/attach 编号` from the same person
   in the same chat, within the policy's `pending_window` (`take_pending`).
3. `link`: a signed link that expires (bot/signed_links.py), served by
   webhooks/files.py.
4. `prune` (a scheduled job and `complaintbot attachments prune`): held
   files whose wait is over are forgotten, and the bytes no ticket uses and
   none waits with leave the store once untouched for a day.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta

import structlog
from tortoise.transactions import in_transaction

from bot.domain.attachments import FileFacts, accepted_type, attached, clean_name
from bot.domain.policy import AttachmentRules
from bot.domain.ticket import Actor
from bot.filestore import FileStore, Pruned
from bot.ledger import Ledger
from bot.settings import Settings
from bot.signed_links import sign, verify
from models import Attachment, PendingAttachment

log = structlog.get_logger(__name__)

# A file on no ticket is removed only once untouched this long: longer than
# any write takes to be recorded, so a file just stored is never taken.
IDLE_BEFORE_REMOVAL = timedelta(days=1)
_DIGESTS_PER_QUERY = 500


class Attachments:
    """The attachment store and its links, one per process (app key ATTACHMENTS)."""

    def __init__(self, store: FileStore, *, secret: bytes | None, base_url: str) -> None:
        self.store = store
        self._secret = secret
        self._base_url = base_url.rstrip("/")

    @classmethod
    def from_settings(cls, settings: Settings) -> Attachments:
        """The store under ATTACHMENTS_DIR, links signed with ATTACHMENTS_SECRET."""
        secret = settings.attachments_secret
        return cls(FileStore(settings.attachments_dir),
                   secret=secret.get_secret_value().encode() if secret else None,
                   base_url=settings.base_url)

    @property
    def links_enabled(self) -> bool:
        """Whether download links can be made (ATTACHMENTS_SECRET is set)."""
        return bool(self._secret)

    async def accept(self, data: bytes, name: str, rules: AttachmentRules) -> FileFacts:
        """Check one file and keep its bytes (then it is in the store, on no
        ticket yet): FileRefused (too large, not an accepted type, empty) or
        FileStoreUnavailable, with nothing stored."""
        kind = accepted_type(data, rules, name)
        digest, _ = await self.store.put(data)
        return FileFacts(sha256=digest, name=clean_name(name, kind, digest),
                         content_type=kind.content_type, size=len(data))

    async def attach(
        self, ledger: Ledger, number: int, files: Sequence[FileFacts], *, actor: Actor,
        source: str, now: datetime, pending: Sequence[PendingAttachment] = (),
    ) -> list[Attachment]:
        """Put accepted files on ticket `number`: its history event and the
        rows in one transaction (Refused when the actor may not, or the ticket
        does not exist; then nothing changes). `pending` rows, taken for this
        ticket, are attached too and leave the queue in the same transaction."""
        facts = tuple(files) + tuple(
            FileFacts(sha256=p.sha256, name=p.name, content_type=p.content_type, size=p.size)
            for p in pending)
        async with in_transaction():
            await ledger.apply(number, lambda t: attached(t, actor, facts), actor=actor,
                               source=source, now=now)
            rows = [await Attachment.create(
                ticket_id=number, sha256=f.sha256, name=f.name, content_type=f.content_type,
                size=f.size, uploaded_by=actor.userid, uploaded_by_name=actor.name,
                source=source, uploaded_at=now) for f in facts]
            if pending:
                await PendingAttachment.filter(id__in=[p.id for p in pending]).delete()
        log.info("attachments_added", ticket=number, count=len(rows), source=source,
                 actor=actor.userid)
        return rows

    async def hold(
        self, files: Sequence[FileFacts], *, userid: str, chatid: str | None, source: str,
        now: datetime, rules: AttachmentRules,
    ) -> None:
        """Keep accepted files waiting for `/attach 编号` from `userid` in this
        chat; forget what waited there longer than the policy allows."""
        await PendingAttachment.filter(received_at__lt=now - rules.pending_window).delete()
        for f in files:
            await PendingAttachment.create(
                userid=userid, chatid=chatid or "", sha256=f.sha256, name=f.name,
                content_type=f.content_type, size=f.size, source=source, received_at=now)
        log.info("attachments_held", userid=userid, chatid=chatid, count=len(files))

    @staticmethod
    async def take_pending(userid: str, chatid: str | None, now: datetime,
                           rules: AttachmentRules) -> list[PendingAttachment]:
        """The files `userid` sent in this chat within the pending window, oldest first."""
        return await PendingAttachment.filter(
            userid=userid, chatid=chatid or "",
            received_at__gte=now - rules.pending_window).order_by("id")

    async def prune(self, *, now: datetime, rules: AttachmentRules) -> Pruned:
        """Forget the held files whose wait for `/attach` is over, then remove
        from the store the files untouched for a day (twice the wait, if
        longer) that no ticket uses and none waits with. Safe beside other
        replicas and writers (bot/filestore.py)."""
        pruned = Pruned()
        pruned.expired = await PendingAttachment.filter(
            received_at__lt=now - rules.pending_window).delete()
        idle = max(IDLE_BEFORE_REMOVAL, 2 * rules.pending_window)
        candidates, pruned.leftovers = await self.store.idle_files(idle)
        for start in range(0, len(candidates), _DIGESTS_PER_QUERY):
            part = candidates[start:start + _DIGESTS_PER_QUERY]
            used = set(await Attachment.filter(sha256__in=part).values_list("sha256", flat=True))
            used.update(await PendingAttachment.filter(sha256__in=part).values_list(
                "sha256", flat=True))
            for digest in part:
                if digest not in used and (freed := await self.store.remove_idle(
                        digest, idle)) is not None:
                    pruned.files += 1
                    pruned.bytes += freed
        if pruned.files or pruned.leftovers or pruned.expired:
            log.info("attachments_pruned", files=pruned.files, bytes=pruned.bytes,
                     leftovers=pruned.leftovers, expired_held=pruned.expired)
        return pruned

    def link(self, attachment: Attachment, now: datetime, rules: AttachmentRules) -> str | None:
        """A signed link to the file, valid for the policy's link lifetime;
        None while ATTACHMENTS_SECRET is unset."""
        if not self._secret:
            return None
        token = sign(self._secret, attachment.id, now + rules.link_lifetime)
        return f"{self._base_url}/files/{token}"

    def granted(self, token: str, now: datetime) -> int:
        """The attachment id a link's token grants now: LinkForged, LinkExpired."""
        if not self._secret:
            raise LookupError("ATTACHMENTS_SECRET is not set")
        return verify(self._secret, token, now)


async def attachments_of(number: int) -> list[Attachment]:
    """Ticket `number`'s attachments, oldest first."""
    return await Attachment.filter(ticket_id=number).order_by("id")
