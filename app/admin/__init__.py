"""The admin pages: courses, lesson funnels, students, grades and problems, behind Google sign-in."""
