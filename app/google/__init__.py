"""Google: the stored authorization, sign-in, API clients (Classroom, Drive, Sheets)."""
