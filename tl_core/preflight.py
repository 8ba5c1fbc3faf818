"""Checks a run must pass before it is queued: ``RunConfig.validate()`` plus what needs this machine.

``check(config)`` adds, to the settings checks, the ones that need the registries and the
machine but no data decoding: the backbone exists and has enough stages to freeze, its
pretrained weights are here (or downloads are allowed), the chosen device exists, the data
sets are known, image folders exist inside the data root and have a layout the run can use
(an unlabelled folder only as the target, and not for a fine-tune on target labels). The job manager and the
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
    from tl_core.data.folder import folder_layout, resolve_folder
    from tl_core.device import device_availability

    d, m = config.data, config.model
    try:
        bb.get_info(m.backbone)
    except (KeyError, bb.BackboneError) as e:
        pending = bb.pending_architecture(m.backbone) if m.backbone.startswith(bb.RUN_PREFIX) else None
        if pending is None:
            problems.append(f"model.backbone: {e.args[0] if e.args else e}")
        else:  # saved by a run still in the queue: it will be there when this run starts (after that one)
            freeze = bb.freeze_problem(pending, m.freeze)
            if freeze:
                problems.append(freeze)
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
                layout = folder_layout(resolve_folder(getattr(d, f"{role}_path"), d.data_root))
            except tld.DataError as e:
                problems.append(f"data.{role}_path: {e}")
            else:
                if not layout.labelled:
                    problems += [p for p in [unlabelled_problem(config, role, str(layout.root))] if p]
        elif name not in known:
            problems.append(f"data.{role}: unknown data set '{getattr(d, role)}'; known: {', '.join(sorted(known))}.")

    ok, why = device_availability().get(config.device, (True, ""))
    if not ok:
        problems.append(f"device: {config.device} is not available here ({why}); choose auto or cpu.")
    return problems


def unlabelled_problem(config: RunConfig, role: str, folder: str) -> str | None:
    """Why an unlabelled image folder (no class sub-folders) cannot be the ``role`` of this run, or None.

    An unlabelled target is fine for a method that trains on source labels: adaptation methods use its
    images, and source only is their baseline (both report label-free scores, no target accuracy). A
    source without labels, or a fine-tune on target labels, cannot train.
    """
    layout = (f"Expected {folder}/<class>/<image> (one sub-folder per class) or {folder}/train/<class>/<image> "
              "with val/ or test/ beside it")
    if role == "source":
        return (f"data.source_path: folder '{folder}' has no class sub-folders, so its images have no labels; the "
                f"source is what the model learns the classes from. {layout}.")
    if config.labelled_domain() == "target":
        from tl_core.methods import all_methods

        adapt = [c.title for c in all_methods().values() if c.uses_target][:4]
        return (f"data.target_path: folder '{folder}' has no class sub-folders, so its images have no labels, and "
                f"a fine-tune on the target trains on target labels. {layout}, or choose an adaptation method "
                f"that uses unlabelled target images ({', '.join(adapt)}).")
    return None
