"""A team vault on PostgreSQL: values, tags, rules, golden sets and the pilot log on the team's
server; each desk a local replica with its own keys (see desk.py and store.py)."""
