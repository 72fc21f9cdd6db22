"""Encrypted database backups on Drive, their retention, and a tested restore."""
