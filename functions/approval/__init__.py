"""Manual approval of a release: ``POST /models/{name}/versions/{version}/approve|reject`` (docs/api.md)."""
