"""Lessons: the file format, the check registry, the catalog and the step engine."""
