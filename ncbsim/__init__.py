"""ncbsim: simulator of an I-24/7 style police communications network.

This package holds what the node, the gateway and the simulator share: the
envelope (end-to-end encryption and signatures), identity and PKI, the key
directory, generated gRPC stubs (``ncbsim.v2``), configuration, logging and the CLI.
"""

__version__ = "0.1.0"
