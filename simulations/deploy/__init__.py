"""The network as containers (docs/deploy.md): the deployment model (``deployment.json``),
the PKI cut into per-pod bundles, the Kubernetes manifests and Compose file rendered from
them, the ``kubectl`` wrapper that applies them, what a pod runs (``pod``, ``records``)
and the podman the image build and the smoke test use (``podman``)."""
