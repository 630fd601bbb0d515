"""Create the project's virtual environment and install the package with the right torch.

``make train`` / ``make test`` call this on first use (and again when ``pyproject.toml``
changes). Only the standard library and the ordinary pip client are used.

Which torch (``--torch``, or ``make TORCH=...``):

* ``auto`` (default): a CUDA build where ``nvidia-smi`` sees a GPU, else a CPU build;
* ``cpu``: PyTorch's CPU wheel index; where that index cannot be reached, a CPU wheel that
  pip's own configuration already offers (a ``find-links`` folder); else a clear error;
* ``cuda``: PyPI's default build (CUDA on Linux);
* anything else is passed to pip as a requirement, e.g. ``TORCH="torch==2.5.1"``.

A torch already importable in the environment is kept (``--torch`` other than ``auto``
replaces it).
"""

from __future__ import annotations

import argparse
import glob
import os
import re
import shutil
import socket
import subprocess
import sys
import venv
from pathlib import Path

CPU_INDEX = "https://download.pytorch.org/whl/cpu"
REPO = Path(__file__).resolve().parents[1]


def say(message: str) -> None:
    print(f"[setup] {message}", flush=True)


def gpu_visible() -> bool:
    if not shutil.which("nvidia-smi"):
        return False
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired):
        return False
    return out.returncode == 0 and "GPU" in out.stdout


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether a TCP connection to the host of ``url`` opens (no proxy-aware HTTP: a quick probe
    so that an unreachable index costs seconds, not pip's minutes of retries)."""
    host = re.sub(r"^https?://", "", url).split("/")[0]
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


def pip_find_links(python: str) -> list[str]:
    """The folders pip is configured to look in for wheels (``find-links``)."""
    folders = os.environ.get("PIP_FIND_LINKS", "").split()
    out = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True)
    for line in out.stdout.splitlines():
        if "find-links" in line.split("=", 1)[0]:
            folders += line.split("=", 1)[1].strip().strip("'\"").split()
    return [f for f in dict.fromkeys(folders) if os.path.isdir(f)]


def local_cpu_torch(python: str) -> str | None:
    """``torch==X`` for the newest CPU wheel in pip's configured ``find-links`` folders."""
    versions = []
    for folder in pip_find_links(python):
        for wheel in glob.glob(os.path.join(folder, "torch-*+cpu-*.whl")):
            match = re.match(r"torch-([\d.]+)\+cpu-", os.path.basename(wheel))
            if match:
                versions.append(tuple(int(p) for p in match.group(1).split(".")))
    if not versions:
        return None
    return "torch==" + ".".join(map(str, max(versions)))


def torch_install_args(choice: str, python: str) -> list[str]:
    if choice == "auto":
        choice = "cuda" if gpu_visible() else "cpu"
        say(f"torch: {'a CUDA GPU is visible' if choice == 'cuda' else 'no CUDA GPU visible'}, installing the {choice} build "
            "(choose another with make TORCH=cpu|cuda|'torch==<version>')")
    if choice == "cuda":
        return ["torch"]
    if choice != "cpu":
        return [choice]
    if reachable(CPU_INDEX):
        return ["torch", "--index-url", CPU_INDEX]
    local = local_cpu_torch(python)
    if local:
        say(f"torch: {CPU_INDEX} cannot be reached; using the CPU wheel pip's configuration offers ({local})")
        return [local]
    sys.exit(f"error: cannot install a CPU build of torch: {CPU_INDEX} cannot be reached and pip offers no local CPU "
             "wheel. Fix: install torch into the environment yourself (e.g. pip install torch==<version> from a "
             "wheel you have), then run make again; or choose make TORCH=cuda for PyPI's default build.")


def pip_install(python: str, args: list[str]) -> None:
    """``pip install args``, its output shown only if it fails (less the "Location … is ignored"
    lines that local file indexes print by the hundred)."""
    out = subprocess.run([python, "-m", "pip", "install", "--disable-pip-version-check", *args],
                         capture_output=True, text=True)
    if out.returncode:
        print("\n".join(l for l in (out.stdout + out.stderr).splitlines() if "is ignored" not in l), file=sys.stderr)
        sys.exit(f"error: pip install {' '.join(args)} failed (above). Fix: see pip's message; make TORCH=... picks "
                 "another torch build.")


def has_torch(python: str) -> bool:
    return subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--venv", default=".venv")
    parser.add_argument("--torch", default="auto")
    parser.add_argument("--extras", default="dev")
    args = parser.parse_args()

    env_dir = Path(args.venv)
    python = str(env_dir / "bin" / "python")
    if not Path(python).exists():
        say(f"creating {env_dir}")
        venv.create(env_dir, with_pip=True)
    if args.torch != "auto" or not has_torch(python):
        pip_install(python, torch_install_args(args.torch, python))
    say(f"installing the package with [{args.extras}] (a few minutes the first time)")
    pip_install(python, ["-e", f"{REPO}[{args.extras}]"])
    version = subprocess.run([python, "-c", "import torch; print(torch.__version__, 'CUDA' if torch.cuda.is_available() else 'CPU')"],
                             capture_output=True, text=True, check=True).stdout.strip()
    say(f"ready: {env_dir} with torch {version}")


if __name__ == "__main__":
    main()
