"""State shared by the replicas of a router set, in Redis (``MCP_STATE_URL``)."""
