"""Wire-level local test servers for the cloud APIs voltpipe talks to (BigQuery, Vertex AI, KFP)."""
