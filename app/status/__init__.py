"""What is wrong right now: one report for manage.py status and the admins."""
