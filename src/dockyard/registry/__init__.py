"""The registry server: an OCI distribution-spec registry with accounts and tokens.

    app.py          Starlette app: /v2/ routes, /token, /api/ (admin)
    routes_*.py     handlers (blobs, uploads, manifests, tags, catalog, referrers)
    errors.py       the distribution-spec error table (code, message, HTTP status)
    storage/        blob storage drivers behind one protocol (filesystem; S3 later)
    db.py           SQLite connection factory (schema ready for PostgreSQL later)
    metadata.py     repositories, manifests, tags, blob links, uploads, referrers
    access.py       the AccessController protocol the routes call (allow-all default)
    accounts.py     users, organizations, teams, robot tokens, repository visibility
    tokens.py       Docker token auth (JWT issuer, /token GET and POST) and basic auth
    serve.py        `dockyard registry serve` (on dockyard.httpd, sendfile for blobs)
"""
