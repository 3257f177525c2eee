"""ncbsim: simulator of an I-24/7 style police communications network.

One installed package on five floors (docs/architecture.md): the shared core here
(envelope, identity and PKI, key directory, client and mailer, serving, the work
directory, generated gRPC stubs in ``ncbsim.v2``), the two programs ``ncbsim.node`` and
``ncbsim.gateway``, then ``ncbsim.simulations``, ``ncbsim.load`` and, on top, the command
line ``ncbsim.cli``. The repository keeps node/, gateway/, simulations/ and load/ at its
top; links in this folder make them subpackages.
"""

__version__ = "0.1.0"
