"""Chat commands (/respond, /plan, ...): one module per command, registered by
a small router. Built by the chat-surface issue on top of bot.ledger."""
