"""./manage.py lessons test: each lesson taken through the solution beside it, against local platforms.

``runner`` walks a lesson through its solution (a chat script, app/cli/chat_script.py) and
reports each step as it passes; ``core`` gives each lesson a core of its own (settings
from nowhere else, a fresh SQLite database, served on a loopback port); ``platforms``
starts what the lesson runs on (hosted git, the Zulip and GitHub test servers from
``tests/``) and does the student's ``@ zulip …`` / ``@ github …`` actions there.
"""
