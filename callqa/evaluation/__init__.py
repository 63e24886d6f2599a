"""How far to trust the scores: agreement with human graders, on a shipped labelled set
(`callqa eval scoring`) and on a tenant's own graded calls (the `grader_agreement` asset)."""
