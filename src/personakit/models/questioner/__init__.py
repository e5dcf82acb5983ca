"""The questioner-aware dual-tower responder (Zeng et al., 2024).

* :mod:`~personakit.models.questioner.config`: :class:`DualTowerConfig`;
* :mod:`~personakit.models.questioner.outputs`: :class:`DualTowerOutput`;
* :mod:`~personakit.models.questioner.collator`: :class:`QuestionerCollator`;
* :mod:`~personakit.models.questioner.model`: :class:`DualTowerResponder`.
"""

from personakit.models.questioner.collator import QuestionerCollator
from personakit.models.questioner.config import GENERAL_MODES, DualTowerConfig
from personakit.models.questioner.model import DualTowerResponder
from personakit.models.questioner.outputs import DualTowerOutput

__all__ = ["DualTowerConfig", "DualTowerOutput", "DualTowerResponder", "QuestionerCollator", "GENERAL_MODES"]
