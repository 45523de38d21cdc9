"""Handlers for everyone: errors, Telegram's own events, leaving dialogs, what anyone may
read, and the fallback."""
