"""What the bot shows: texts, keyboards, formatting, charts, QR codes, CSV and posters.
No database writes here."""
