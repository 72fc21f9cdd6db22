"""The Zulip platform: the API client with its shared rate budget, reply delivery, zulip.* checks."""
