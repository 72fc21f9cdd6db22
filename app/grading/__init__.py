"""Grades: queued with the run that earns them, delivered to Classroom (and the gradebook sheet) by the poller."""
