"""Self-supervised pretraining losses (pure torch, one module per loss; each docstring states its equation).

Classification terms (RotNet's 4-way rotation loss, HSSL's L_task / L_group) are plain
``torch.nn.functional.cross_entropy`` and get no wrapper here.
"""

from .moco_infonce import moco_infonce, moco_logits
from .nt_xent import nt_xent
from .reconstruction import masked_mse, reconstruction_mse
from .simsiam import simsiam_negcos
from .ssmtl_pretext import ssmtl_pretext

__all__ = [
    "nt_xent",
    "moco_logits",
    "moco_infonce",
    "simsiam_negcos",
    "ssmtl_pretext",
    "reconstruction_mse",
    "masked_mse",
]
