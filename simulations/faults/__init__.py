"""Faults, one module per family: link (proxy), process (signals), clock (skew), kernel.

Each family module declares its kinds (``KINDS``) and does them (``apply``, ``heal``);
ncbsim.simulations.faults.registry maps every kind to its family. The kernel family does link
kinds as kernel state in real-network mode.
"""
