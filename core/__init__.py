"""The ground floor: what every layer uses (texts in both languages, UserError, paths, name rules).
It imports nothing of ours."""
