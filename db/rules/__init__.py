"""Pure rules: the program file, points arithmetic, cards, tokens, who may do what,
and the domain errors. No database here."""
