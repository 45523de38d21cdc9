"""Use cases that write: each one database transaction, committed once through the unit of
work, with the messages it owes (outbox) stored in the same transaction."""
