"""The Telegram side of the coalition loyalty program."""
