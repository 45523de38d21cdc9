"""Background work: the notice and campaign delivery workers, scheduled jobs, reminders
and the web server (health, metrics, webhook)."""
