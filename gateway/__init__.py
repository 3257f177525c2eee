"""The central gateway: authenticates bureaus by mTLS, routes, fans out and audits.

It sees routing headers and sizes, never a payload: every body is sealed end to end.
"""
