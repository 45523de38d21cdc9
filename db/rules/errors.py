"""Domain errors. The bot's errors router turns each into a localized message by its `code`;
`params` fill the message's placeholders. Raising one means nothing was written."""

from __future__ import annotations

from typing import Any


class DomainError(Exception):
    code = "domain_error"

    def __init__(self, message: str = "", **params: Any) -> None:
        super().__init__(message or self.code)
        self.params = params


class InvalidAmount(DomainError):
    """Zero, negative, non-numeric or with more than two decimals."""

    code = "invalid_amount"


class InvalidReceipt(DomainError):
    """What follows `#` is not a receipt number: empty, too long or unprintable."""

    code = "invalid_receipt"


class ReceiptTaken(DomainError):
    """This partner already posted a sale with this receipt number today, for another
    member or amount."""

    code = "receipt_taken"


class AmountTooLarge(DomainError):
    """Over the program's max_purchase: most likely a typo at the till."""

    code = "amount_too_large"


class InvalidPoints(DomainError):
    code = "invalid_points"


class NotEnoughPoints(DomainError):
    code = "not_enough_points"


class RedeemLimitExceeded(DomainError):
    code = "redeem_limit_exceeded"


class IdempotencyConflict(DomainError):
    """The same idempotency key came back with different content."""

    code = "idempotency_conflict"


class UnknownMember(DomainError):
    code = "unknown_member"


class UnknownPartner(DomainError):
    code = "unknown_partner"


class UnknownTransaction(DomainError):
    code = "unknown_transaction"


class NotReversible(DomainError):
    code = "not_reversible"


class AlreadyReversed(DomainError):
    code = "already_reversed"


class RefundTooLarge(DomainError):
    code = "refund_too_large"


class WrongPartner(DomainError):
    """Staff of one partner acting on another partner's transaction."""

    code = "wrong_partner"


class ReasonRequired(DomainError):
    code = "reason_required"


class InvalidInvite(DomainError):
    """Unknown, forged, already used or expired staff invite."""

    code = "invalid_invite"


class NotStaff(DomainError):
    """Not (or no longer) staff, or not allowed this action in their role."""

    code = "not_staff"


class TooManyLookups(DomainError):
    """A cashier typed too many card numbers that name nobody: a guess, not a typo."""

    code = "too_many_lookups"


class RequestClosed(DomainError):
    """A redemption request that was already confirmed, declined or expired."""

    code = "request_closed"


class OwnCard(DomainError):
    """Staff crediting or redeeming on their own member card (refused and audited)."""

    code = "own_card"


class RepeatSale(DomainError):
    """The same cashier posted the same amount to the same member minutes ago: the till asks
    "again?" and posts only when told to."""

    code = "repeat_sale"


class DiscountChanged(DomainError):
    """The member's tier (and with it their discount) changed between the till showing the
    amount to pay and the sale being posted: nothing was posted; the till shows it again."""

    code = "discount_changed"


class NoClub(DomainError):
    """The program has no club, or does not sell it this way (no Stars price, no money
    price): nothing was sold."""

    code = "no_club"


class ClubPriceChanged(DomainError):
    """The club's price in the program file is not the one the till showed (the file
    changed meanwhile): nothing was sold; `price` is the price now."""

    code = "club_price_changed"


class InvalidLines(DomainError):
    """A sale's itemised lines cannot be used: a line without a positive quantity, an amount
    that is not money (negative, more than two decimals), a category or sku that is not one
    (`line`: its position from 0, `field`: which of its fields), or too many lines."""

    code = "invalid_lines"


class LinesDontAddUp(DomainError):
    """A sale's lines' amounts do not add up to the sale's amount (`total` against
    `amount`): nothing was posted."""

    code = "lines_dont_add_up"


class UnknownSale(DomainError):
    """No sale of this partner has this document number on that business day (another
    partner's is never found)."""

    code = "unknown_sale"
