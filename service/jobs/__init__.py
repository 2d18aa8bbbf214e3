"""Background jobs: the runner (a SQL-backed queue), the handler of each job kind, watched corpora."""
