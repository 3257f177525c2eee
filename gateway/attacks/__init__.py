"""The classroom-mode gateway: the real gateway with attacks a trainer can trigger.

Served only by ``ncbsim gateway --classroom-attacks FILE`` (which ``ncbsim classroom``
passes); nothing here is imported otherwise. :mod:`.service` wraps the gateway's RPCs,
:mod:`.modes` reads the mode file and holds the small tools of tampering, and
:mod:`.forgery` makes up entries, answers and queries with the gateway's own keys. The
security suite (tests/security) attacks the network through this same code.
"""

from ncbsim.gateway.attacks.modes import MODES, Mode, ModeError, ModeFile
from ncbsim.gateway.attacks.service import AttackGateway, attack_files

__all__ = ["MODES", "AttackGateway", "Mode", "ModeError", "ModeFile", "attack_files"]
