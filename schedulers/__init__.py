"""Background jobs: the deadline sweeper, the outbox worker and report runs.
Built by the clock issue on top of models.Deadline and models.Notification."""
