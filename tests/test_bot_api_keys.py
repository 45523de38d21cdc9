"""/api_key in the bot: a manager makes a key for their partner (shown once), lists and
revokes it; an owner does it for any partner; a double tap makes one key and revokes once;
the key opens the partner API until it is revoked."""

from __future__ import annotations

import re

import pytest
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from db.ledger.models import ApiKey, AuditLog
from db.rules.errors import NotStaff
from db.rules.program import Program
from db.usecases.api_keys import create_key, key_hash
from db.usecases.staff import active_staff
from tests.apiharness import live_api
from tests.botharness import BotHarness
from tests.fakegram import text_of
from tests.till import hire

Sessions = async_sessionmaker[AsyncSession]
KEY = re.compile(r"cb_live_[A-Za-z0-9]{48}")


async def test_a_manager_makes_lists_and_revokes_a_key(
    harness: BotHarness, sessions: Sessions, engine: AsyncEngine, program: Program
) -> None:
    manager = harness.user("Mia")
    await hire(harness, manager, "coffee", "manager")
    await manager.send("/api_key")
    listing = await manager.wait_message("API keys of")
    assert "No keys yet" in text_of(listing)
    await manager.click("➕ New key: sales and read")
    shown = await manager.wait_message("A new API key")
    (key,) = KEY.findall(text_of(shown))
    assert "shown only this once" in text_of(shown)
    # The listing's buttons made their key: pressed again, no second key.
    stale = next(
        b["callback_data"]
        for row in listing["reply_markup"]["inline_keyboard"]
        for b in row
        if b["callback_data"].startswith("apik:new:coffee:both:")
    )
    await manager.click(listing, stale, check=False)
    answer = await manager.wait_callback_answer()
    assert "made already" in answer["text"] and answer.get("show_alert")
    async with sessions() as s:
        stored = (await s.execute(select(ApiKey))).scalars().all()
    assert len(stored) == 1 and stored[0].scopes == ["sales", "read"]
    assert stored[0].secret_hash == key_hash(key) and key not in repr(stored[0].__dict__)

    async with live_api(engine, sessions, program) as api:
        lookup = await api.call("GET", "/members/lookup?card_number=000000000000", key=key)
        assert lookup.code == "unknown_member"  # the key opened the API
        await manager.send("/api_key")
        again = await manager.wait_message("API keys of")
        assert key[:16] in text_of(again) and "last used" in text_of(again)
        assert key not in text_of(again)  # never shown again
        await manager.click(f"🗑 Revoke {key[:16]}…")
        confirm = await manager.wait_message("Revoke")
        await manager.click("🗑 Revoke")
        await manager.wait_for(lambda: "revoked:" in text_of(manager.messages[-1]) or None)
        sure = next(
            b["callback_data"]
            for row in confirm["reply_markup"]["inline_keyboard"]
            for b in row
            if b["text"] == "🗑 Revoke"
        )
        await manager.click(confirm, sure, check=False)  # a second press: harmless
        await manager.wait_for(lambda: "revoked already" in text_of(manager.messages[-1]) or None)
        refused = await api.call("GET", "/members/lookup?card_number=000000000000", key=key)
        assert refused.code == "api_key_revoked"
    async with sessions() as s:
        actions = (await s.execute(select(AuditLog.action))).scalars().all()
    assert actions.count("api_key_create") == 1 and actions.count("api_key_revoke") == 1
    await manager.send("/api_key")
    assert "No keys yet" in text_of(await manager.wait_message("API keys of"))


async def test_owners_manage_any_partners_keys_and_cashiers_none(
    harness: BotHarness, sessions: Sessions, program: Program
) -> None:
    owner, cashier = harness.owner(), harness.user("Cy")
    await owner.send("/api_key")
    assert "coffee" in text_of(await owner.wait_message("/api_key PARTNER"))
    await owner.send("/api_key books")
    await owner.wait_message("API keys of")
    await owner.click("➕ New key: read only")
    shown = await owner.wait_message("A new API key")
    assert "read only" in text_of(shown) and KEY.search(text_of(shown))
    await hire(harness, cashier, "coffee", "cashier")
    await cashier.send("/api_key")
    refused = await cashier.wait_message("/api_key is for")
    assert "manager" in text_of(refused) and "API keys of" not in text_of(refused)
    async with sessions() as s:
        staff = await active_staff(s, cashier.user_id)
        assert staff is not None
        # A forged button reaching the use case is refused by the same table.
        with pytest.raises(NotStaff):
            await create_key(
                s,
                actor=cashier.user_id,
                owners=[],
                staff=staff,
                partner_slug="coffee",
                scopes=["sales"],
                op="forged",
            )
        assert await s.scalar(select(func.count()).select_from(ApiKey)) == 1
