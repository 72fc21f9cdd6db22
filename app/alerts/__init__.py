"""Alerts into Zulip: Alertmanager's notifications become outbox items the dispatcher posts to the ops stream."""
