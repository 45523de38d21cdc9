"""A partner's keys to the partner API (bot/api): made, listed and revoked in the bot by the
partner's manager or an owner (db/rules/access.py "api_keys"), and the actor a request's key
is to the use cases (authenticate: db/usecases/api/actor.py ApiActor).

A key is `cb_live_` and 48 random letters and digits: the first 8 (its prefix) name it in
lists, in the audit log and when a request finds it; the other 40 (238 random bits) are the
secret. Only the SHA-256 of the whole key is stored: a slow password hash (bcrypt, argon2)
protects low-entropy secrets from guessing, which 238 random bits need no protection from,
and a fast hash lets every request be checked in microseconds. The key is shown once, when
it is made; a lost key is revoked and replaced."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import string
from collections.abc import Collection
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.ext.asyncio import AsyncSession

from db.engine import fetch_row_alone
from db.ledger.models import ApiKey, Partner
from db.ledger.writer import unit_of_work
from db.rules.errors import NotStaff, UnknownPartner
from db.usecases.api.actor import ApiActor
from db.usecases.staff import StaffInfo, audit

KEY_PREFIX = "cb_live_"
SCOPES = ("sales", "read")  # in the order lists show them
_ALPHABET = string.ascii_letters + string.digits
PUBLIC_CHARS, SECRET_CHARS = 8, 40


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    partner_slug: str
    prefix: str
    scopes: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None

    @property
    def shown(self) -> str:
        """How lists and the audit log name the key: its first characters."""
        return KEY_PREFIX + self.prefix


class KeyRefused(Exception):
    """A request's key is not one: unknown, wrong, or revoked (`revoked`, and `key_id` of the
    key its prefix named, when it named one)."""

    def __init__(self, *, revoked: bool = False, key_id: int | None = None) -> None:
        super().__init__("revoked" if revoked else "invalid")
        self.revoked = revoked
        self.key_id = key_id


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh key and its prefix."""
    public = "".join(secrets.choice(_ALPHABET) for _ in range(PUBLIC_CHARS))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(SECRET_CHARS))
    return KEY_PREFIX + public + secret, public


def scopes_of(values: Collection[str]) -> tuple[str, ...]:
    """The scopes asked for, in SCOPES order; NotStaff for none or an unknown one."""
    if not values or not set(values) <= set(SCOPES):
        raise NotStaff(scopes=",".join(sorted(values)))
    return tuple(s for s in SCOPES if s in values)


async def _partner_for(
    session: AsyncSession,
    *,
    actor: int,
    owners: Collection[int],
    staff: StaffInfo | None,
    partner_slug: str | None,
) -> tuple[int, str]:
    """The partner whose keys `actor` manages: an owner names any active partner; a manager
    (the "api_keys" action) has only their own."""
    if actor not in owners:
        if staff is None:
            raise NotStaff(action="api_keys")
        staff.require("api_keys")
        if partner_slug is not None and partner_slug != staff.partner_slug:
            raise NotStaff(partner=partner_slug)
        partner_slug = staff.partner_slug
    row = (
        await session.execute(
            select(Partner.id, Partner.slug).where(
                Partner.slug == (partner_slug or ""), Partner.active
            )
        )
    ).one_or_none()
    if row is None:
        raise UnknownPartner(partner=partner_slug)
    return row.id, row.slug


async def create_key(
    session: AsyncSession,
    *,
    actor: int,
    owners: Collection[int],
    staff: StaffInfo | None,
    partner_slug: str | None,
    scopes: Collection[str],
    op: str,
    now: datetime | None = None,
) -> tuple[KeyInfo, str | None]:
    """A new key for the partner, and the key itself, to show once. `op` names the bot
    dialog that asked: asked again (a double tap), no second key is made and the key is
    None (it was shown the first time, and is kept nowhere)."""
    now = now or datetime.now(UTC)
    wanted = scopes_of(scopes)
    async with unit_of_work(session):
        partner_id, slug = await _partner_for(
            session, actor=actor, owners=owners, staff=staff, partner_slug=partner_slug
        )
        key, public = new_key()
        made = (
            await session.execute(
                pg_insert(ApiKey)
                .values(
                    partner_id=partner_id,
                    prefix=public,
                    secret_hash=key_hash(key),
                    scopes=list(wanted),
                    created_by=actor,
                    op=op,
                    created_at=now,
                )
                .on_conflict_do_nothing(index_elements=[ApiKey.op])
                .returning(ApiKey.id)
            )
        ).scalar_one_or_none()
        if made is None:
            earlier = (await session.execute(_KEYS.where(ApiKey.op == op))).one()
            return _info(earlier), None
        await audit(
            session,
            "api_key_create",
            actor=actor,
            staff=staff,
            partner_id=partner_id,
            key=KEY_PREFIX + public,
            scopes=",".join(wanted),
        )
        return KeyInfo(made, slug, public, wanted, now, None, None), key


_KEYS = select(
    ApiKey.id,
    Partner.slug,
    ApiKey.prefix,
    ApiKey.scopes,
    ApiKey.created_at,
    ApiKey.last_used_at,
    ApiKey.revoked_at,
).join(Partner, Partner.id == ApiKey.partner_id)


async def list_keys(
    session: AsyncSession,
    *,
    actor: int,
    owners: Collection[int],
    staff: StaffInfo | None,
    partner_slug: str | None,
) -> tuple[str, list[KeyInfo]]:
    """The partner's keys in use, the newest first, with the partner's slug."""
    partner_id, slug = await _partner_for(
        session, actor=actor, owners=owners, staff=staff, partner_slug=partner_slug
    )
    rows = await session.execute(
        _KEYS.where(ApiKey.partner_id == partner_id, ApiKey.revoked_at.is_(None)).order_by(
            ApiKey.id.desc()
        )
    )
    return slug, [_info(row) for row in rows]


def _info(row: Any) -> KeyInfo:
    return KeyInfo(row[0], row[1], row[2], tuple(row[3]), row[4], row[5], row[6])


async def revoke_key(
    session: AsyncSession,
    *,
    actor: int,
    owners: Collection[int],
    staff: StaffInfo | None,
    key_id: int,
    now: datetime | None = None,
) -> tuple[KeyInfo, bool]:
    """Revoke a key at once (the next request with it is refused); whether this call
    revoked it (False: it already was, and nothing changed). Only an owner, or a manager of
    the key's partner, may."""
    now = now or datetime.now(UTC)
    async with unit_of_work(session):
        row = (await session.execute(_KEYS.where(ApiKey.id == key_id))).one_or_none()
        if row is None:
            raise NotStaff(key=key_id)
        info = _info(row)
        await _partner_for(
            session, actor=actor, owners=owners, staff=staff, partner_slug=info.partner_slug
        )
        revoked = (
            await session.execute(
                update(ApiKey)
                .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
                .values(revoked_at=now)
                .returning(ApiKey.partner_id)
            )
        ).scalar_one_or_none()
        if revoked is None:
            return info, False
        await audit(
            session,
            "api_key_revoke",
            actor=actor,
            staff=staff,
            partner_id=revoked,
            key=info.shown,
        )
        return replace(info, revoked_at=now), True


# The key a request names by its prefix, with its partner: one statement, sent alone (no
# transaction to begin or end), in the driver's form.
_FIND = """
    SELECT k.id, k.secret_hash, k.scopes, k.revoked_at, p.id AS partner_id, p.slug, p.name,
           p.active
    FROM api_keys AS k JOIN partners AS p ON p.id = k.partner_id
    WHERE k.prefix = $1
"""


async def authenticate(session: AsyncSession, presented: str) -> ApiActor:
    """The actor of a request's key (KeyRefused unless it is a key of ours, in use, of a
    partner still in the program). Compared in constant time. `session` has no
    transaction under way (a request's first statement)."""
    public = presented.removeprefix(KEY_PREFIX)[:PUBLIC_CHARS]
    if (
        not presented.startswith(KEY_PREFIX)
        or len(presented) != len(KEY_PREFIX) + len(public) + SECRET_CHARS
    ):
        raise KeyRefused()
    row = await fetch_row_alone(session, _FIND, public)
    if row is None or not hmac.compare_digest(row["secret_hash"], key_hash(presented)):
        raise KeyRefused(key_id=row["id"] if row is not None else None)
    if row["revoked_at"] is not None or not row["active"]:
        raise KeyRefused(revoked=True, key_id=row["id"])
    return ApiActor(
        key_id=row["id"],
        partner_id=row["partner_id"],
        partner_slug=row["slug"],
        partner_name=row["name"],
        scopes=frozenset(row["scopes"]),
        prefix=public,
    )


def call_details(**details: Any) -> str:
    """An API call's audit details, as the audit log keeps them (JSON of strings)."""
    return json.dumps({k: str(v) if v is not None else None for k, v in details.items()})


# A call on the audit log, and the key's last use ($4: touch it): one statement, alone.
_RECORD = """
    WITH touched AS (UPDATE api_keys SET last_used_at = $5 WHERE id = $1 AND $4)
    INSERT INTO audit_log (api_key_id, partner_id, action, details, created_at)
    VALUES ($1, $2, $3, $6::jsonb, $5)
"""


async def record_call(
    session: AsyncSession,
    *,
    key_id: int,
    partner_id: int | None,
    action: str,
    now: datetime | None = None,
    touch: bool = True,
    **details: Any,
) -> None:
    """A call a key made, on the audit log (`action` "api_call", or "api_key_refused" for a
    wrong or revoked key), with the key's last use (`touch`): one statement, committed by
    itself (`session` has no transaction under way). db/usecases/api_idempotency.py
    `finish` writes a POST's, with its answer."""
    await fetch_row_alone(
        session,
        _RECORD,
        key_id,
        partner_id,
        action,
        touch,
        now or datetime.now(UTC),
        call_details(**details),
    )
