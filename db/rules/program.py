"""The program file: the rules all partners agreed on, loaded and validated at start.

A bad file stops start-up with one message naming the key and the problem, e.g.
`program.toml: partners[2].earn_percent: must be greater than or equal to 0`.
"""

from __future__ import annotations

import re
import tomllib
from datetime import date, time, timedelta
from decimal import Decimal
from functools import cached_property
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from babel.numbers import get_currency_precision
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    HttpUrl,
    PlainValidator,
    ValidationError,
    field_validator,
    model_validator,
)


class ProgramError(Exception):
    """The program file cannot be used; the message names the key."""


def _exact_decimal(value: Any) -> Any:
    # TOML floats are binary; their shortest repr is what the author typed ("0.01" for 0.01).
    if isinstance(value, float):
        return str(value)
    if isinstance(value, bool):
        raise ValueError("must be a number, not true/false")
    return value


Dec = Annotated[Decimal, BeforeValidator(_exact_decimal), Field(allow_inf_nan=False)]
# Strict: a TOML `true` or "10" where a count of points belongs is a mistake, not a 1 or 10.
Int = Annotated[int, Field(strict=True)]
# Strict too: "yes", "no" or "false" in quotes is a mistake, not a truth value.
Bool = Annotated[bool, Field(strict=True)]
_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{0,29}$")
Slug = Annotated[str, Field(pattern=_SLUG.pattern)]
# What a sale's itemised line is for ("coffee-beans"), as a till's software sends it and a
# promotion names it (db/rules/lines.py).
CATEGORY = re.compile(r"^[a-z0-9][a-z0-9-]{0,59}$")


class Text(str):
    """A text from the program file that members read: a string, or a table of languages
    (`{ en = "Tenth coffee free", pl = "Dziesiąta kawa gratis" }`). As a string it is the
    English text (else the table's first); `in_language` gives a reader theirs, falling
    back to that. The English text is also the name's identity (tiers are stored by it)."""

    translations: dict[str, str]

    def __new__(cls, default: str, translations: dict[str, str] | None = None) -> Text:
        text = super().__new__(cls, default)
        text.translations = dict(translations or {})
        return text

    def in_language(self, language: str) -> str:
        return self.translations.get(language) or str(self)


_LANGUAGE = re.compile(r"^[a-z]{2}$")


def _text(min_length: int, max_length: int) -> PlainValidator:
    def check(value: Any) -> Text:
        if isinstance(value, Text):
            return value
        if isinstance(value, str):
            texts = {"": value}
        elif isinstance(value, dict) and value:
            for code, text in value.items():
                if not isinstance(code, str) or not _LANGUAGE.match(code):
                    raise ValueError(
                        f"{code!r} is not a language code (write two letters: en, ru, uk, pl)"
                    )
                if not isinstance(text, str):
                    raise ValueError(f"the {code} text must be a string")
            texts = dict(value)
        else:
            raise ValueError(
                'must be a string or a table of languages, like { en = "…", pl = "…" }'
            )
        for code, text in texts.items():
            where = f"the {code} text " if code else ""
            if len(text.strip()) < min_length:
                raise ValueError(f"{where}must not be empty")
            if len(text) > max_length:
                raise ValueError(f"{where}is longer than {max_length} characters")
        if "" in texts:
            return Text(texts[""])
        default = texts.get("en") or next(iter(texts.values()))
        return Text(default, texts)

    return PlainValidator(check, json_schema_input_type=str | dict[str, str])


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, arbitrary_types_allowed=True)


class ProgramRules(_Strict):
    name: Annotated[Text, _text(1, 100)]
    currency: str = Field(pattern=r"^[A-Z]{3}$")
    point_value: Dec = Field(gt=0, max_digits=12, decimal_places=6)
    welcome_points: Int = Field(default=0, ge=0, le=1_000_000)
    expire_days: Int = Field(default=365, ge=0, le=36_500)
    max_redeem_percent: Dec = Field(default=Decimal(50), ge=0, le=100)
    max_purchase: Dec = Field(gt=0, max_digits=12, decimal_places=2)
    card_ttl_seconds: Int = Field(default=600, ge=30, le=86_400)
    rules_url: HttpUrl | None = None
    timezone: str = "UTC"  # an IANA name; every local day, time and period is in it

    @field_validator("timezone")
    @classmethod
    def _iana_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError, OSError):  # OSError: "Europe", a folder
            raise ValueError(
                f'{value!r} is not an IANA time zone name (write it like "Europe/Warsaw")'
            ) from None
        return value

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)


class ReferralRules(_Strict):
    inviter_points: Int = Field(default=0, ge=0, le=1_000_000)
    invitee_points: Int = Field(default=0, ge=0, le=1_000_000)
    qualifying_purchase: Dec = Field(default=Decimal(0), ge=0, decimal_places=2)


# A member's tier is the highest whose min_spend their money spent in this trailing window
# reaches (Program.tier_for_spend).
TIER_WINDOW = timedelta(days=365)
# The local time of the nightly tier recalculation (bot/workers/jobs.py schedules it; the
# simulator replays it: db/rules/simulation.py).
TIERS_NIGHTLY = time(2, 30)


class Tier(_Strict):
    name: Annotated[Text, _text(1, 60)]
    min_spend: Dec = Field(ge=0, decimal_places=2)
    multiplier: Dec = Field(gt=0, le=100, decimal_places=3)
    # Money off at every partner's till, at that partner's cost (points are earned on what
    # is paid). A program of tiers with discounts and earn_percent = 0 is a discount program.
    discount_percent: Dec = Field(default=Decimal(0), ge=0, lt=100, decimal_places=2)


class Offer(_Strict):
    title: Annotated[Text, _text(1, 100)]
    text: Annotated[Text, _text(1, 500)]
    until: date | None = None


class PartnerRules(_Strict):
    slug: Slug
    name: Annotated[Text, _text(1, 200)]
    # "charity": takes donated points (/donate) instead of sales; settlement pays it.
    kind: Literal["business", "charity"] = "business"
    category: Annotated[Text, _text(0, 60)] = Text("")
    earn_percent: Dec = Field(default=Decimal(0), ge=0, le=100, decimal_places=3)
    address: str = Field(default="", max_length=300)
    offers: list[Offer] = Field(default_factory=list)

    @property
    def charity(self) -> bool:
        return self.kind == "charity"


class StampCard(_Strict):
    """ "The tenth coffee free": a sale of at least `min_purchase` at one of `partners` adds
    one stamp (at most `per_day` a day, 0: no limit); `stamps` fill the card, which gives
    `reward` (a voucher) or `reward_points` and starts a new card. `distinct_partners`: each
    stamp from a different partner (a tour of the town). Stamps lapse `expire_days` after
    the card's last stamp (0: never).

    `per_day` defaults to 1 on an ordinary card and to 0 (no limit) on a `distinct_partners`
    card, whose stamps each come from another partner anyway: a tour is often walked in one
    afternoon."""

    slug: Slug
    name: Annotated[Text, _text(1, 100)]
    partners: list[Slug] = Field(min_length=1)
    stamps: Int = Field(ge=2, le=100)
    min_purchase: Dec = Field(default=Decimal(0), ge=0, decimal_places=2)
    per_day: Int = Field(default=1, ge=0, le=100)
    distinct_partners: Bool = False
    reward: Slug | None = None
    reward_points: Int = Field(default=0, ge=0, le=1_000_000)
    expire_days: Int = Field(default=0, ge=0, le=36_500)

    @model_validator(mode="before")
    @classmethod
    def _per_day_default(cls, data: Any) -> Any:
        tour = isinstance(data, dict) and data.get("distinct_partners") is True
        if tour and "per_day" not in data:
            return {**data, "per_day": 0}
        return data

    @model_validator(mode="after")
    def _one_reward(self) -> StampCard:
        if self.reward is None and self.reward_points == 0:
            raise ValueError(
                "give the card a reward (a catalogue slug) or reward_points greater than 0"
            )
        if self.reward is not None and self.reward_points:
            raise ValueError("give the card only one of reward or reward_points")
        if len(set(self.partners)) != len(self.partners):
            raise ValueError("partners: a partner is listed twice")
        if self.distinct_partners and self.stamps > len(self.partners):
            raise ValueError(
                f"distinct_partners needs at least as many partners as stamps ({self.stamps})"
            )
        return self


class Reward(_Strict):
    """A gift or a discount in the catalogue, claimed with a voucher at `partner`: bought for
    `points` (0: only given by stamp cards and promotions), valid `valid_days`; `per_member`
    and `stock` limit how many vouchers are issued (0: no limit)."""

    slug: Slug
    title: Annotated[Text, _text(1, 100)]
    partner: Slug
    points: Int = Field(default=0, ge=0, le=10_000_000)
    valid_days: Int = Field(default=30, ge=1, le=3_650)
    per_member: Int = Field(default=0, ge=0, le=1_000)
    stock: Int = Field(default=0, ge=0, le=10_000_000)


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")  # date.weekday() order
_HOURS = re.compile(r"^([01][0-9]|2[0-3]):([0-5][0-9])-([01][0-9]|2[0-4]):([0-5][0-9])$")


class When(_Strict):
    """When a promotion runs, in the program's time zone: on `weekdays` (none listed: every
    day), within `hours` ("07:00-11:00": from 07:00 up to, not including, 11:00; "22:00-24:00"
    runs to midnight), from the day `from` through the day `until` (both included); and, with
    `categories`, on a sale whose itemised lines include one of those categories (a till's
    software sends lines; a sale without lines gets no such promotion): its min_purchase and
    its multiplier then count those lines' money only (db/rules/promotions.py)."""

    model_config = ConfigDict(populate_by_name=True)

    weekdays: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] = Field(
        default_factory=list
    )
    hours: str | None = None
    from_: date | None = Field(default=None, alias="from")
    until: date | None = None
    categories: list[str] = Field(default_factory=list)

    @field_validator("hours")
    @classmethod
    def _hours(cls, value: str | None) -> str | None:
        if value is None:
            return None
        match = _HOURS.match(value)
        if match is None:
            raise ValueError(f'{value!r}: write hours like "07:00-11:00" (24-hour clock)')
        start = int(match[1]) * 60 + int(match[2])
        end = int(match[3]) * 60 + int(match[4])
        if end > 24 * 60 or start >= end:
            raise ValueError(
                f"{value!r}: the end must come after the start on the same day (for a night "
                'offer give two promotions, like "22:00-24:00" and "00:00-02:00")'
            )
        return value

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        for category in value:
            if not CATEGORY.match(category):
                raise ValueError(
                    f"{category!r} is not a category: write it as the tills send it, like "
                    '"coffee-beans" (a-z, 0-9 and "-", at most 60)'
                )
        if len(set(value)) != len(value):
            raise ValueError("a category is listed twice")
        return value

    @model_validator(mode="after")
    def _dates(self) -> When:
        if len(set(self.weekdays)) != len(self.weekdays):
            raise ValueError("weekdays: a day is listed twice")
        if self.from_ is not None and self.until is not None and self.until < self.from_:
            raise ValueError("until must not be before from")
        return self

    @cached_property
    def minutes(self) -> tuple[int, int] | None:
        """The hours as minutes of the local day: [start, end)."""
        if self.hours is None:
            return None
        match = _HOURS.match(self.hours)
        assert match is not None
        return int(match[1]) * 60 + int(match[2]), int(match[3]) * 60 + int(match[4])


class Who(_Strict):
    """Which members a promotion is for (every condition given must hold): at one of `tiers`;
    in the club; buying for the first time ever, or for the first time at this partner; back
    after `inactive_days` or more without a purchase (win-back); in their birthday week (the
    birthday and the six days after it); members for at least `member_years` full years."""

    tiers: list[Annotated[Text, _text(1, 60)]] = Field(default_factory=list)
    club: Bool = False
    first_ever: Bool = False
    first_at_partner: Bool = False
    inactive_days: Int = Field(default=0, ge=0, le=3_650)
    birthday: Bool = False
    member_years: Int = Field(default=0, ge=0, le=100)

    @property
    def needs_history(self) -> bool:
        """Whether deciding needs the member's earlier purchases (one query at the till)."""
        return self.first_ever or self.first_at_partner or bool(self.inactive_days)


class Effect(_Strict):
    """What a promotion gives, exactly one of: the sale's points × `multiplier`, `bonus_points`,
    `stamps` more on the selling partner's stamp cards, or a voucher for the catalogue's
    `reward` (honoured at that reward's partner: a co-branded coupon when it is another)."""

    multiplier: Dec | None = Field(default=None, gt=1, le=100, decimal_places=3)
    bonus_points: Int | None = Field(default=None, ge=1, le=1_000_000)
    stamps: Int | None = Field(default=None, ge=1, le=100)
    reward: Slug | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> Effect:
        given = [k for k in ("multiplier", "bonus_points", "stamps", "reward") if getattr(self, k)]
        if len(given) != 1:
            raise ValueError(
                "give exactly one effect: multiplier, bonus_points, stamps or reward"
                + (f" (this one gives {', '.join(given)})" if given else "")
            )
        return self


class Promotion(_Strict):
    """A time-bound or personal offer (DESIGN.md, "The program file"): at `partners` (none
    listed: every partner that sells), `when` it runs, for `who`, on a sale of at least
    `min_purchase` (the money charged, after a tier discount), gives its `effect`. The cost
    is `funded_by` the partners in percent, or "program"; by default the selling partner.
    `personal`: each member who newly qualifies is told once. `max_per_member`: times one
    member may get it (0: no limit)."""

    slug: Slug
    title: Annotated[Text, _text(1, 100)]
    text: Annotated[Text, _text(0, 500)] = Text("")
    partners: list[Slug] = Field(default_factory=list)
    when: When = When()
    who: Who = Who()
    min_purchase: Dec = Field(default=Decimal(0), ge=0, decimal_places=2)
    effect: Effect
    funded_by: Literal["program"] | dict[Slug, Int] | None = None
    personal: Bool = False
    max_per_member: Int = Field(default=0, ge=0, le=1_000)

    @field_validator("funded_by", mode="before")
    @classmethod
    def _program_or_percents(cls, value: Any) -> Any:
        """One clear message for what is neither form (not pydantic's one per form)."""
        if value is None or value == "program":
            return value
        if isinstance(value, dict) and all(
            isinstance(share, int) and not isinstance(share, bool) for share in value.values()
        ):
            return value
        shown = f"{value!r}" if isinstance(value, str) else "this"
        raise ValueError(
            f'{shown} is not a funder: write "program", or percents per partner like '
            "{ bakery = 100 } or { bakery = 50, coffee = 50 } (whole numbers)"
        )

    @field_validator("funded_by")
    @classmethod
    def _percents(cls, value: Any) -> Any:
        if isinstance(value, dict):
            if not value:
                raise ValueError('name at least one partner, or write "program"')
            if any(share <= 0 for share in value.values()):
                raise ValueError("each partner's share is a percent greater than 0")
            if sum(value.values()) != 100:
                raise ValueError(
                    f"the shares must add up to 100 (they add up to {sum(value.values())})"
                )
        return value


# A club membership runs this long from each payment (a Telegram Stars subscription's
# period: subscription_period = 2592000 seconds).
CLUB_PERIOD = timedelta(days=30)
# The slug of the promotion the club's multiplier is (Program.club_promotion): no
# [[promotions]] entry may take it.
CLUB_SLUG = "club"


class Club(_Strict):
    """A paid club (DESIGN.md, "The program file"): membership for `stars_per_month`
    Telegram Stars as a 30-day subscription (0: not sold for Stars) or for `price` in the
    program's currency, at a till or by card in Telegram where a payment provider is
    connected ("0": not sold for money). Members earn × `multiplier` on top of their tier's
    (the extra points paid by the program), get `discount_percent` off at every till on
    top of their tier's discount, and `welcome_points` once per person ever. `perks` are
    what else the partners promise (free delivery, new products first…), shown in /club."""

    # Also the title of its invoices, which Telegram limits to 32 characters.
    name: Annotated[Text, _text(1, 32)]
    text: Annotated[Text, _text(0, 500)] = Text("")
    perks: list[Annotated[Text, _text(1, 200)]] = Field(default_factory=list, max_length=10)
    stars_per_month: Int = Field(default=0, ge=0, le=10_000)
    price: Dec = Field(default=Decimal(0), ge=0, max_digits=12, decimal_places=2)
    multiplier: Dec = Field(default=Decimal(1), ge=1, le=100, decimal_places=3)
    discount_percent: Dec = Field(default=Decimal(0), ge=0, lt=100, decimal_places=2)
    welcome_points: Int = Field(default=0, ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _sold(self) -> Club:
        if not self.stars_per_month and not self.price:
            raise ValueError(
                'give the club a price: stars_per_month (Telegram Stars), price ("29.00" in '
                "the program's currency), or both"
            )
        return self


class GiftRules(_Strict):
    max_points_per_day: Int = Field(default=0, ge=0, le=10_000_000)  # 0: no gifting


class Program(_Strict):
    program: ProgramRules
    referral: ReferralRules = ReferralRules()
    tiers: list[Tier] = Field(min_length=1)
    partners: list[PartnerRules] = Field(min_length=1)
    stamp_cards: list[StampCard] = Field(default_factory=list)
    rewards: list[Reward] = Field(default_factory=list)
    gifts: GiftRules = GiftRules()
    promotions: list[Promotion] = Field(default_factory=list)
    club: Club | None = None

    @field_validator("tiers")
    @classmethod
    def _tiers_ordered(cls, tiers: list[Tier]) -> list[Tier]:
        names = [t.name for t in tiers]
        if len(set(names)) != len(names):
            raise ValueError("tier names must be unique")
        spends = [t.min_spend for t in tiers]
        if spends != sorted(spends) or len(set(spends)) != len(spends):
            raise ValueError("tiers must be listed by strictly increasing min_spend")
        if spends[0] != 0:
            raise ValueError('the first tier must have min_spend = "0"')
        return tiers

    @model_validator(mode="after")
    def _unique_slugs(self) -> Program:
        seen: set[str] = set()
        for i, partner in enumerate(self.partners):
            if partner.slug in seen:
                raise ValueError(f"partners[{i}].slug: duplicate slug {partner.slug!r}")
            seen.add(partner.slug)
            if partner.charity and (partner.earn_percent or partner.offers):
                raise ValueError(
                    f"{_entry('partners', i, partner.slug)}: a charity takes donations, not "
                    "sales: give it no earn_percent and no offers"
                )
        if all(p.charity for p in self.partners):
            raise ValueError(
                'partners: at least one partner must be a business (kind = "business"): '
                "charities take donated points, and points are earned and spent at businesses"
            )
        rewards: set[str] = set()
        for i, reward in enumerate(self.rewards):
            if reward.slug in rewards:
                raise ValueError(f"rewards[{i}].slug: duplicate slug {reward.slug!r}")
            rewards.add(reward.slug)
            if problem := self._not_selling(reward.partner):
                raise ValueError(f"{_entry('rewards', i, reward.slug)}.partner: {problem}")
        cards: set[str] = set()
        for i, card in enumerate(self.stamp_cards):
            if card.slug in cards:
                raise ValueError(f"stamp_cards[{i}].slug: duplicate slug {card.slug!r}")
            cards.add(card.slug)
            where = _entry("stamp_cards", i, card.slug)
            for slug in card.partners:
                if problem := self._not_selling(slug):
                    raise ValueError(f"{where}.partners: {problem}")
            if card.reward is not None and card.reward not in rewards:
                known = ", ".join(r.slug for r in self.rewards)
                raise ValueError(
                    f"{where}.reward: no reward {card.reward!r} "
                    + (f"(the rewards are: {known})" if known else "([[rewards]] is empty)")
                )
            if card.reward is None:
                continue
            # A 0-point reward's voucher moves no points when it is claimed: the partner that
            # honours it bears it. Only a card of that partner alone may give it, or a card
            # filled elsewhere would give a voucher its honouring partner pays for silently.
            reward = next(r for r in self.rewards if r.slug == card.reward)
            if not reward.points and card.partners != [reward.partner]:
                raise ValueError(
                    f"{where}.reward: {reward.slug!r} is worth 0 points and honoured "
                    f"at {reward.partner!r}, so only a card of {reward.partner!r} alone may "
                    f'give it (partners = ["{reward.partner}"]): give the reward a price in '
                    "points, or the card reward_points"
                )
        self._check_promotions()
        if self.club is not None:
            # Telegram's invoices and the till's button take the price in the currency's
            # smallest unit (db/rules/club.py minor_units): 3000.50 JPY has none.
            digits = get_currency_precision(self.program.currency)
            if self.club.price.scaleb(digits) % 1:
                raise ValueError(
                    f"club.price: {self.club.price} {self.program.currency} is finer than the "
                    f"currency's smallest unit: write it with {digits} decimals at most"
                )
            top = max(t.discount_percent for t in self.tiers)
            if top + self.club.discount_percent >= 100:
                raise ValueError(
                    f"club.discount_percent: with the {top} % of the top tier it would take "
                    f"{top + self.club.discount_percent} % off: the two together must stay "
                    "below 100"
                )
        return self

    def _check_promotions(self) -> None:
        slugs: set[str] = set()
        tiers = {str(t.name) for t in self.tiers}
        for i, promo in enumerate(self.promotions):
            if promo.slug in slugs:
                raise ValueError(f"promotions[{i}].slug: duplicate slug {promo.slug!r}")
            slugs.add(promo.slug)
            where = _entry("promotions", i, promo.slug)
            if len(set(promo.partners)) != len(promo.partners):
                raise ValueError(f"{where}.partners: a partner is listed twice")
            for slug in promo.partners:
                if problem := self._not_selling(slug):
                    raise ValueError(f"{where}.partners: {problem}")
            if isinstance(promo.funded_by, dict):
                for slug in promo.funded_by:
                    if problem := self._not_selling(slug):
                        raise ValueError(f"{where}.funded_by: {problem}")
            for name in promo.who.tiers:
                if str(name) not in tiers:
                    raise ValueError(
                        f"{where}.who.tiers: no tier {str(name)!r} "
                        f"(the tiers are: {', '.join(sorted(tiers))})"
                    )
            if promo.slug == CLUB_SLUG:
                raise ValueError(
                    f'{where}.slug: "{CLUB_SLUG}" is the club\'s own multiplier: choose another'
                )
            if promo.who.club and self.club is None:
                raise ValueError(f"{where}.who.club: the program has no [club]")
            reward_slug = promo.effect.reward
            if reward_slug is not None:
                if self.reward(reward_slug) is None:
                    known = ", ".join(r.slug for r in self.rewards)
                    raise ValueError(
                        f"{where}.effect.reward: no reward {reward_slug!r} "
                        + (f"(the rewards are: {known})" if known else "([[rewards]] is empty)")
                    )
                if isinstance(promo.funded_by, dict) and len(promo.funded_by) > 1:
                    raise ValueError(
                        f"{where}.funded_by: a voucher has one funder: name one partner "
                        '(its share 100) or write "program"'
                    )
                # As for a stamp card's: a 0-point reward's voucher moves no points when it
                # is claimed, so its honouring partner bears it: only a promotion at that
                # partner alone, funded by it, may give it.
                reward = self.reward(reward_slug)
                assert reward is not None
                own = promo.funded_by is None or promo.funded_by == {reward.partner: 100}
                if not reward.points and (promo.partners != [reward.partner] or not own):
                    raise ValueError(
                        f"{where}.effect.reward: {reward.slug!r} is worth 0 points and "
                        f"honoured at {reward.partner!r}, so only a promotion at "
                        f'{reward.partner!r} alone (partners = ["{reward.partner}"]), funded '
                        "by it, may give it: give the reward a price in points"
                    )
            if promo.effect.stamps:
                # Its stamps go on the selling partner's ordinary cards: every partner it
                # applies at must have one, or "+n stamps" would be told where none is put.
                bare = [
                    p.slug
                    for p in self.partners
                    if not p.charity
                    and (not promo.partners or p.slug in promo.partners)
                    and not self.promotion_cards_at(p.slug)
                ]
                if bare:
                    raise ValueError(
                        f"{where}.effect.stamps: {', '.join(repr(b) for b in bare)} "
                        "has no ordinary stamp card (a distinct_partners card takes no "
                        "promotion's stamps): list in partners only partners with one"
                    )

    def _not_selling(self, slug: str) -> str:
        """Why the partner `slug` cannot honour a reward or stamp a card ("" if it can)."""
        partner = self.partner(slug)
        if partner is None:
            known = ", ".join(p.slug for p in self.partners if not p.charity)
            return f"no partner {slug!r} " + (
                f"(the partners are: {known})" if known else "(no partner sells)"
            )
        if partner.charity:
            return f"{slug!r} is a charity: it sells nothing"
        return ""

    @cached_property
    def partners_by_slug(self) -> dict[str, PartnerRules]:
        return {p.slug: p for p in self.partners}

    def partner(self, slug: str) -> PartnerRules | None:
        return self.partners_by_slug.get(slug)

    @cached_property
    def rewards_by_slug(self) -> dict[str, Reward]:
        return {r.slug: r for r in self.rewards}

    def reward(self, slug: str) -> Reward | None:
        return self.rewards_by_slug.get(slug)

    @cached_property
    def club_promotion(self) -> Promotion | None:
        """The club's multiplier as a promotion for club members at every partner, paid by
        the program (slug "club"), so the till, receipts, refunds and the simulator treat
        it as any ×N promotion. None without a club or with a multiplier of 1."""
        if self.club is None or self.club.multiplier == 1:
            return None
        return Promotion(
            slug=CLUB_SLUG,
            title=self.club.name,
            who=Who(club=True),
            effect=Effect(multiplier=self.club.multiplier),
            funded_by="program",
        )

    @cached_property
    def _all_promotions(self) -> list[Promotion]:
        club = self.club_promotion
        return [*self.promotions, club] if club is not None else list(self.promotions)

    def promotion(self, slug: str) -> Promotion | None:
        """The file's promotion of that slug, or the club's multiplier ("club")."""
        return next((p for p in self._all_promotions if p.slug == slug), None)

    def promotions_at(self, partner: str) -> list[Promotion]:
        """The promotions a sale at `partner` may get, in the file's order, the club's
        multiplier last."""
        return [p for p in self._all_promotions if not p.partners or partner in p.partners]

    def discount_percent(self, tier: str, club: bool) -> Decimal:
        """The money off a member gets at every till: their tier's, plus the club's when
        they are in it."""
        extra = self.club.discount_percent if club and self.club is not None else Decimal(0)
        return self.tier(tier).discount_percent + extra

    def stamp_card(self, slug: str) -> StampCard | None:
        return next((c for c in self.stamp_cards if c.slug == slug), None)

    def stamp_cards_at(self, partner: str) -> list[StampCard]:
        """The stamp cards a sale at `partner` may stamp."""
        return [c for c in self.stamp_cards if partner in c.partners]

    def promotion_cards_at(self, partner: str) -> list[StampCard]:
        """The cards a promotion's stamps go on at `partner`: its ordinary (not
        distinct_partners) cards."""
        return [c for c in self.stamp_cards_at(partner) if not c.distinct_partners]

    @property
    def charities(self) -> list[PartnerRules]:
        return [p for p in self.partners if p.charity]

    def tier(self, name: str) -> Tier:
        """The tier of that name; the lowest one if the file no longer has it."""
        return next((t for t in self.tiers if t.name == name), self.tiers[0])

    def tier_for_spend(self, spend: Decimal) -> Tier:
        return [t for t in self.tiers if t.min_spend <= spend][-1]

    def next_tier(self, name: str) -> Tier | None:
        names: list[str] = [t.name for t in self.tiers]
        index = names.index(name) if name in names else 0
        return self.tiers[index + 1] if index + 1 < len(self.tiers) else None


def _entry(key: str, index: int, slug: Any) -> str:
    """`stamp_cards[1] (city-tour)`: an entry of a list by its position, and by its slug
    when it has a valid one (the author finds it by either)."""
    named = f" ({slug})" if isinstance(slug, str) and _SLUG.match(slug) else ""
    return f"{key}[{index}]{named}"


def _where(loc: tuple[int | str, ...], data: Any = None) -> str:
    """Pydantic's ("partners", 2, "earn_percent") as the file's author reads it:
    `partners[2] (gym).earn_percent`, the entry's slug read from the file's `data`. A
    problem with the slug itself names only the position (the message names the slug)."""
    parts: list[str] = []
    node = data
    for n, item in enumerate(loc):
        if isinstance(item, int):
            entry = node[item] if isinstance(node, list) and 0 <= item < len(node) else None
            slug = entry.get("slug") if isinstance(entry, dict) else None
            if n + 1 < len(loc) and loc[n + 1] == "slug":
                slug = None
            parts[-1] = _entry(parts[-1], item, slug) if parts else f"[{item}]"
            node = entry
        else:
            parts.append(str(item))
            node = node.get(item) if isinstance(node, dict) else None
    return ".".join(parts)


def _describe(error: Any) -> str:
    kind, message = error["type"], error["msg"]
    if kind == "extra_forbidden":
        return "unknown key (check its spelling against the documented schema)"
    if kind == "bool_type":
        return f"{error.get('input')!r} is not true or false (write true or false, no quotes)"
    if kind == "literal_error":
        expected = error.get("ctx", {}).get("expected", "")
        return f"{error.get('input')!r} is not one of {expected}"
    if kind == "missing":
        return "required key is missing"
    if kind in ("decimal_parsing", "decimal_type"):
        return f'not a decimal number: {error.get("input")!r} (write it like "12.50")'
    return str(message).removeprefix("Value error, ")


def parse_program(data: dict[str, Any], source: str = "program.toml") -> Program:
    try:
        return Program.model_validate(data)
    except ValidationError as exc:
        first = exc.errors()[0]
        more = len(exc.errors()) - 1
        tail = f" (and {more} more problem{'s' if more > 1 else ''})" if more else ""
        where = f"{_where(first['loc'], data)}: " if first["loc"] else ""
        raise ProgramError(f"{source}: {where}{_describe(first)}{tail}") from None


def load_program(path: str | Path) -> Program:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ProgramError(f"{path}: program file not found (set PROGRAM_FILE)") from None
    except tomllib.TOMLDecodeError as exc:
        raise ProgramError(f"{path}: not valid TOML: {exc}") from None
    return parse_program(data, str(path))
