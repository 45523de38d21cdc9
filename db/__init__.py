"""The loyalty domain: program rules, the double-entry ledger and its use cases.

Nothing here imports aiogram, so the same code serves the bot, jobs, the CLI and tests.
"""
