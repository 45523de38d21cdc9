"""/poster and /link end to end: the poster's QR code is a join link with a source, joins
record where they came from, and /stats counts them by source."""

from __future__ import annotations

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from bot.views.qr import decode_qr
from db.ledger.models import AuditLog, Member
from db.rules.tokens import referral_token
from tests.botharness import BOT_USERNAME, BotHarness
from tests.fakegram import UserClient, text_of
from tests.till import card_link_payload, hire, join

Sessions = async_sessionmaker[AsyncSession]
LINK = f"https://t.me/{BOT_USERNAME}?start="


async def get_poster(harness: BotHarness, user: UserClient, args: str = "") -> tuple[str, str]:
    """(the PDF's caption, the link in the PNG's QR code) of the poster `user` asks for."""
    await user.send(f"/poster {args}".strip())
    document = await user.wait_message(lambda m: "document" in m, timeout=15)
    pdf = harness.server.file(document["document"]["file_id"])
    assert pdf is not None and pdf.data.startswith(b"%PDF")
    photo = await user.wait_message(lambda m: "photo" in m, timeout=15)
    png = harness.server.file(photo["photo"][-1]["file_id"])
    assert png is not None and png.data.startswith(b"\x89PNG")
    (link,) = decode_qr(png.data)
    assert text_of(photo) == link  # the link printed under the photo is the code's
    return text_of(document), link


async def join_through(user: UserClient, payload: str) -> None:
    await user.send(f"/start {payload}")
    await user.wait_message("one card for")
    await user.click("✅ I accept the rules, join")
    await user.wait_message("offers")


async def source_of(sessions: Sessions, user: UserClient) -> str | None:
    async with sessions() as s:
        return await s.scalar(select(Member.source).where(Member.telegram_id == user.user_id))


async def test_a_poster_join_is_counted_by_its_source(
    harness: BotHarness, sessions: Sessions
) -> None:
    owner = harness.owner()
    caption, link = await get_poster(harness, owner, "coffee ru")
    assert link == LINK + "src-poster-coffee"
    assert "Русский" in caption and "poster-coffee" in caption
    # The program's own poster, in the owner's language.
    caption, program_link = await get_poster(harness, owner)
    assert program_link == LINK + "src-poster" and "English" in caption

    ann, bob, cat = harness.user("Ann"), harness.user("Bob"), harness.user("Cat")
    await join_through(ann, link.removeprefix(LINK))
    assert await source_of(sessions, ann) == "poster-coffee"
    # A friend's invitation records "referral"; a plain /start no source.
    async with sessions() as s:
        ann_id = await s.scalar(select(Member.id).where(Member.telegram_id == ann.user_id))
    assert ann_id is not None
    await bob.send("/start " + referral_token(harness.secret, ann_id))
    await bob.wait_message("invited you")
    await bob.wait_message("one card for")
    await bob.click("✅ I accept the rules, join")
    await bob.wait_message("offers")
    assert await source_of(sessions, bob) == "referral"
    await join(cat)
    assert await source_of(sessions, cat) is None
    # A member opening a poster's link again is welcomed back; nothing changes.
    await ann.send("/start src-poster-books")
    await ann.wait_message("Welcome back")
    assert await source_of(sessions, ann) == "poster-coffee"

    await owner.send("/stats")
    figures = text_of(await owner.wait_message("📊", timeout=15))
    assert "Members: 3 (+3 joined)" in figures
    assert (
        "📣 Joined through: poster-coffee 1 · a friend's invitation 1 · no link 1. After seeing "
        "the program advertised (a poster or a link with a source): 33.3% (1 of 3)"
    ) in figures
    async with sessions() as s:
        actions = (await s.execute(select(AuditLog.action))).scalars().all()
    assert actions.count("poster") == 2


async def test_a_manager_makes_posters_for_their_own_partner_only(
    harness: BotHarness, sessions: Sessions
) -> None:
    max_, carl = harness.user("Max"), harness.user("Carl")
    await hire(harness, max_, "coffee", "manager")  # staff invites ("s…") still work
    await hire(harness, carl, "coffee", "cashier")
    _caption, link = await get_poster(harness, max_)
    assert link == LINK + "src-poster-coffee"
    await max_.send("/poster books")
    assert "You can make posters for Bean There Coffee only" in text_of(
        await max_.wait_message("posters")
    )
    await max_.send("/poster nowhere")
    assert "Use /poster [partner] [language]" in text_of(await max_.wait_message("/poster"))
    # A cashier gets no poster.
    await carl.send("/poster")
    await carl.wait_message()
    assert len([m for m in max_.messages if "document" in m]) == 1
    assert not [m for m in carl.messages if "document" in m or "photo" in m]


async def test_a_link_with_a_source_for_ads_and_campaigns(
    harness: BotHarness, sessions: Sessions
) -> None:
    owner, dan, eve = harness.owner(), harness.user("Dan"), harness.user("Eve")
    await owner.send("/link Autumn-Flyer")
    answer = text_of(await owner.wait_message("Join link"))
    assert LINK + "src-autumn-flyer" in answer
    await join_through(dan, "src-autumn-flyer")
    assert await source_of(sessions, dan) == "autumn-flyer"
    for bad in ("/link", "/link referral", "/link a+b"):
        await owner.send(bad)
        assert "Name the link's source" in text_of(await owner.wait_message("source"))
    # A link with an empty source is not one we made: joining still works, with no source.
    await eve.send("/start src-")
    assert "This link is not valid" in text_of(await eve.wait_message("not valid"))
    await eve.wait_message("one card for")
    await eve.click("✅ I accept the rules, join")
    await eve.wait_message("offers")
    assert await source_of(sessions, eve) is None
    # A member's card link is still a card link.
    assert (await card_link_payload(eve)).startswith("c")
