"""The GitHub platform: the course's GitHub App, per-run repositories, the student's login, `github.*` checks."""
