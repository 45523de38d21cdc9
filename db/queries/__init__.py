"""Read-side queries: what members, the till and the owner see (wallet, till figures,
KPIs, settlement, who sent an update)."""
