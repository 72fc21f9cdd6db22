"""Alerts into Zulip: Alertmanager's notifications become outbox items the reply senders post to the ops stream."""
