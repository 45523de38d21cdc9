"""Handlers for the back office: owners (staff, adjustments, audit), marketers' campaigns,
the figures and settlement, posters and join links."""
