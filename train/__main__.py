"""``python -m train …`` (also the module torchrun starts: ``torchrun --nproc_per_node N -m train …``)."""

import sys

from fastnst.training import main

if __name__ == "__main__":
    sys.exit(main())
