"""CI runs two pytest-xdist workers on two cores: one torch thread per worker avoids oversubscription,
which made multi-threaded CPU tests many times slower there."""
import torch

torch.set_num_threads(1)
