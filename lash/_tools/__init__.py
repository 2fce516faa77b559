"""Tools: typed functions as model tools (JSON schema, argument validation, results)."""
