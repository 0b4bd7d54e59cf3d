"""HTTP edges: the intake API, health checks and (later) WeChat Work callbacks."""
