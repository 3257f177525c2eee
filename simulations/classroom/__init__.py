"""The classroom: a live web view of a running network for trainers."""
