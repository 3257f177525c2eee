"""Load testing of the query path.

The locust harness (``ncbsim load``) and the precise benchmark (``ncbsim bench``).
"""
