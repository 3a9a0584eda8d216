"""Local twins of production services that are not Python packages (OpenSearch)."""
