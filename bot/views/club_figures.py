"""The club's lines in /stats (db/queries/stats.py `ClubFigures`): members, joined and
lapsed; revenue in Stars and in money, kept apart (they are not the same money: Telegram
pays Stars out on its own terms). And in /shift and /today (db/queries/reports.py
`ClubTakings`): months sold at the till and months refunded, apart from sales."""

from __future__ import annotations

from aiogram.utils.i18n import gettext as _
from aiogram.utils.i18n import ngettext as _n

from bot.views import formatting as fmt
from bot.views.club_lapses import club_name, stars
from db.queries.reports import ClubTakings
from db.queries.stats import ClubFigures, ClubMoney
from db.rules.program import Program


def club_lines(figures: ClubFigures, program: Program, *, running: bool) -> list[str]:
    """`running`: the period has not ended, so its members are those in the club now."""
    club = program.club
    lines = [
        (
            _("👑 {club}: {members} members now (+{joined} joined, {lapsed} lapsed)")
            if running
            else _("👑 {club}: {members} members at the end (+{joined} joined, {lapsed} lapsed)")
        ).format(
            club=club_name(program),
            members=fmt.number(figures.members),
            joined=fmt.number(figures.joined),
            lapsed=fmt.number(figures.lapsed),
        )
    ]
    if (club is not None and club.stars_per_month) or figures.stars_paid:
        lines.append(
            _("⭐ Club in Stars: {kept} kept of {paid} paid, {refunded} refunded").format(
                kept=stars(figures.stars_kept),
                paid=stars(figures.stars_paid),
                refunded=stars(figures.stars_refunded),
            )
        )
    money = list(figures.money)
    if not money and club is not None and club.price:
        money = [ClubMoney(program.program.currency)]
    for m in money:
        lines.append(
            _(
                "💳 Club in money: {kept} kept of {paid} paid (card {card}, at tills {till}), "
                "{refunded} refunded"
            ).format(
                kept=fmt.money(m.kept, m.currency),
                paid=fmt.money(m.paid, m.currency),
                card=fmt.money(m.card, m.currency),
                till=fmt.money(m.till, m.currency),
                refunded=fmt.money(m.refunded, m.currency),
            )
        )
    return lines


def till_lines(program: Program, takings: ClubTakings, *, sales: bool) -> list[str]:
    """/shift and /today: the club's months sold at the till and the money taken for them
    (the partner hands it to the coalition: settlement), and the months the owner refunded
    (the till gave the money back), each apart from sales and their refunds. `sales`: the
    text above lists sales (else there is nothing to be apart from)."""
    currency = program.program.currency
    figures = {"club": club_name(program)}
    lines = []
    if takings.months:
        sold = (
            _n(
                "⭐ {club}: {n} month sold, {money} collected (not in the sales above).",
                "⭐ {club}: {n} months sold, {money} collected (not in the sales above).",
                takings.months,
            )
            if sales
            else _n(
                "⭐ {club}: {n} month sold, {money} collected (club money, not a sale).",
                "⭐ {club}: {n} months sold, {money} collected (club money, not sales).",
                takings.months,
            )
        )
        lines.append(
            sold.format(
                n=fmt.number(takings.months), money=fmt.money(takings.money, currency), **figures
            )
        )
    if takings.refunds or takings.refunded:
        lines.append(
            _n(
                "⭐ {club}: {n} month refunded, {money} (given back from the till, not a sale's "
                "refund).",
                "⭐ {club}: {n} months refunded, {money} (given back from the till, not sales' "
                "refunds).",
                takings.refunds,
            ).format(
                n=fmt.number(takings.refunds),
                money=fmt.money(takings.refunded, currency),
                **figures,
            )
        )
    return lines
