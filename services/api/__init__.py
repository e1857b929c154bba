"""The serving layer: a FastAPI service over ClickHouse (facts) and PostgreSQL (directory, grants, tokens, the
access log), with authentication, authorisation per role and tenant, pseudonyms and a hash-chained access log.
`python -m services.api --help` runs it; tokens, audit and directory are its commands.
"""
