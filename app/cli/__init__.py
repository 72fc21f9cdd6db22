"""manage.py command groups, one module per area."""
