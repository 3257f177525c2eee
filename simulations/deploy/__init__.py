"""Deployment: manifests and a Compose file rendered from a scenario, and their image."""
