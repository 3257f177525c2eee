"""The bureau node: its records (SLTD documents, nominal data, stolen vehicles) and server."""
