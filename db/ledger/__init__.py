"""The ledger: the schema (models) and its one writer (postings, holds, the unit of work)."""
