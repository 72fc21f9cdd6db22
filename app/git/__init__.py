"""The Git platform: hosted bare repositories, their post-receive hook and the git.* checks."""
