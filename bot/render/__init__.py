"""Rendering for people: chat markdown, cards, e-mail and SMS texts.

Chinese first, the ticket number in every message, the customer's phone and
VIN masked everywhere a group or a log line could see them."""
