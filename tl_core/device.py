"""Which device a run uses, and which devices this machine offers (the dashboard asks here)."""

from __future__ import annotations

from tl_core.failures import RunError


def _mps_available() -> bool:
    import torch

    return bool(getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available())


def pick_device(choice: str):  # -> torch.device
    """'auto' picks cuda, then mps, then cpu; an unavailable choice raises RunError."""
    import torch

    if choice == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if _mps_available():
            return torch.device("mps")
        return torch.device("cpu")
    if choice == "cuda" and not torch.cuda.is_available():
        raise RunError("CUDA was chosen but this machine has no usable CUDA GPU.",
                       hint="Choose device 'auto' or 'cpu'.")
    if choice == "mps" and not _mps_available():
        raise RunError("MPS was chosen but this machine has no Apple GPU.", hint="Choose device 'auto' or 'cpu'.")
    return torch.device(choice)


def device_availability() -> dict[str, tuple[bool, str]]:
    """Which device choices work here: name -> (available, one-line reason) for the dashboard."""
    import torch

    cuda = torch.cuda.is_available()
    mps = _mps_available()
    if cuda:
        cuda_why = f"{torch.cuda.get_device_name(0)}"
    elif torch.version.cuda is None:
        cuda_why = "this torch build has no CUDA support"
    else:
        cuda_why = "torch found no CUDA GPU on this machine"
    auto = "cuda" if cuda else "mps" if mps else "cpu"
    return {"auto": (True, f"picks {auto} here"), "cpu": (True, "always available"), "cuda": (cuda, cuda_why),
            "mps": (mps, "Apple GPU" if mps else "no Apple GPU on this machine")}
