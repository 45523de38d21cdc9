"""The partner API's use cases: what a till's software (a till program, an online shop) does
at its partner, through an API key, without a Telegram chat. The HTTP layer (bot/api/)
parses a request, calls one of these with the key's ApiActor, and renders what it returns;
the domain errors they raise (db/rules/errors.py) are its problem details.

Each is the till's own use case, shared, not restated: a sale is post_purchase's, a sale
with points is a redemption request the member confirms in Telegram (db/usecases/till.py
open_request; the till polls sale_state for the outcome), a refund is post_reversal's, a
voucher's claim is claim_at's. What is the API's own: the document number (unique per
partner and business day: `api_sales`, migration 0024), a sale's itemised lines, a sale
without a member card (recorded for the partner's figures, never in the ledger), and the
quote (a dry run, writing nothing).

- actor.py: ApiActor, the key acting (its partner, its id for the audit log);
- quote.py: quote a sale;
- sales.py: post a sale (with points, without, without a member card);
- state.py: read a sale (what the till polls);
- requests.py: finish a sale without points, withdraw its request;
- refunds.py: refund a sale by its document number;
- vouchers.py: claim a voucher; look a member up.
"""
