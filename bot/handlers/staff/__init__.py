"""Handlers for staff at the till: cashiers' sales and shift, managers' figures and
refunds, opening a staff invite."""
