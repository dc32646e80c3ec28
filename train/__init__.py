"""``python -m train …`` in a source checkout: the trainer itself is :mod:`fastnst.training`.

This folder holds what belongs to the repository rather than the installed package: the entry
point torchrun starts (``torchrun --nproc_per_node N -m train …``) and ``recipes/``, one file per
shipped style that reproduces it (``python -m train --recipe train/recipes/starry_night.toml``).
"""
