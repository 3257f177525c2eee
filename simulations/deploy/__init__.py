"""The network as containers (docs/deploy.md): the deployment model (``deployment.json``),
the PKI cut into per-pod bundles, the Kubernetes manifests and Compose file rendered from
them, and the ``kubectl`` wrapper that applies them."""
