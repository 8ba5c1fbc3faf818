"""Checks a run must pass before it is queued: ``RunConfig.validate()`` plus what needs this machine.

``check(config)`` adds, to the settings checks, the ones that need the registries and the
machine but no data decoding: the backbone exists and has enough stages to freeze, its
pretrained weights are here (or downloads are allowed), the chosen device exists, the data
sets are known and image folders exist inside the data root. The job manager and the
command line both refuse a run that fails it; the trainer repeats the checks (a folder can
vanish between submit and start) and adds the ones that need the data (batch size against
the real training set, classes of the two domains).

Every message is prefixed by its field path, like ``validate()``'s.
"""

from __future__ import annotations

from tl_core.config import RunConfig


def check(config: RunConfig) -> list[str]:
    """Every reason ``config`` cannot start on this machine; empty when it can."""
    problems = config.validate()
    if problems:
        return problems  # values of the wrong type would trip the checks below
    from tl_core import backbones as bb
    from tl_core import data as tld
    from tl_core.data.folder import resolve_folder
    from tl_core.device import device_availability

    d, m = config.data, config.model
    try:
        bb.get_info(m.backbone)
    except (KeyError, bb.BackboneError) as e:
        problems.append(f"model.backbone: {e.args[0] if e.args else e}")
    else:
        freeze = bb.freeze_problem(m.backbone, m.freeze)
        if freeze:
            problems.append(freeze)
        if m.pretrained and not d.allow_download:
            ok, why = bb.weights_available(m.backbone)
            if not ok:
                problems.append(f"model.pretrained: the pretrained weights of {m.backbone} are not on this machine: "
                                f"{why}. Untick 'pretrained' to train from scratch, or allow downloads.")

    known = {ds.name for ds in tld.list_datasets()}
    for role in ("source", "target"):
        name = str(getattr(d, role)).strip().lower().replace("_", "-")
        if name == "folder":
            try:
                resolve_folder(getattr(d, f"{role}_path"), d.data_root)
            except tld.DataError as e:
                problems.append(f"data.{role}_path: {e}")
        elif name not in known:
            problems.append(f"data.{role}: unknown data set '{getattr(d, role)}'; known: {', '.join(sorted(known))}.")

    ok, why = device_availability().get(config.device, (True, ""))
    if not ok:
        problems.append(f"device: {config.device} is not available here ({why}); choose auto or cpu.")
    return problems
