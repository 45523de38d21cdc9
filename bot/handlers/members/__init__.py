"""Handlers for members: joining, everyday commands, privacy, answering a redemption
request."""
