"""Sweep: grid, random or TPE search over settings and seeds (tl_core/sweep.py, on Optuna).

Pick the fields and their values or ranges, the seeds and a budget; the trials' runs go through the
same job queue as every run (they show on Monitor and Runs too). One progress bar with an ETA covers the
whole sweep; Stop cancels its queued runs and stops the running one. Results: a table grouped by setting
(mean ± std over the seeds), a parallel-coordinates plot, a plot per field, the label-free choice and,
beside it, the oracle's (it uses target labels).
"""

from __future__ import annotations

import pandas as pd
import streamlit as st

from tl_core import sweep
from tl_core.config import RunConfig
from tl_ui import access, entry, keys, resources, runinfo, sweep_view, widgets

REFRESH_S = 2.0
CHART_CONFIG = {"displaylogo": False}


def base_config() -> RunConfig:
    """The settings every trial starts from: the form's domain pair, backbone, epochs and training images."""
    ss = st.session_state
    cfg = RunConfig()
    preset = resources.presets()[ss.get(keys.SWEEP_PRESET) or next(iter(resources.presets()))]
    cfg.data.source, cfg.data.target = preset["source"], preset["target"]
    cfg.model.backbone = ss.get(keys.SWEEP_BACKBONE) or cfg.model.backbone
    cfg.data.image_size = resources.default_image_size(cfg.model.backbone)
    cfg.optim.epochs = int(ss.get(keys.SWEEP_EPOCHS) or cfg.optim.epochs)
    max_train = int(ss.get(keys.SWEEP_MAX_TRAIN) or 0)
    cfg.data.max_train = max_train or None
    cfg.data.max_test = min(1000, 4 * max_train) if max_train else None
    return cfg


def start() -> None:
    """Build the spec from the form, create the study, start its driver; messages go under the form."""
    ss = st.session_state
    errs: list[str] = []
    texts = {}
    for path in ss.get(keys.SWEEP_FIELDS) or []:
        value = ss.get(keys.SWEEP_VALUES_PREFIX + path)
        text = ", ".join(map(str, value)) if isinstance(value, list) else str(value or "")
        if not text.strip():
            errs.append(f"{path}: give its values.")
        texts[path] = text
    for line in str(ss.get(keys.SWEEP_MORE) or "").splitlines():
        if line.strip():
            path, _, text = line.partition("=")
            texts[path.strip()] = text
    params, bad = sweep_view.build_params({p: t for p, t in texts.items() if t.strip()})
    errs += bad
    try:
        seeds = sweep_view.parse_seeds(str(ss.get(keys.SWEEP_SEEDS, "0")))
    except ValueError as e:
        errs.append(str(e))
        seeds = [0]
    sampler = ss.get(keys.SWEEP_SAMPLER) or "grid"
    minutes = float(ss.get(keys.SWEEP_MINUTES) or 0)
    spec = sweep.SweepSpec(params=params, base=base_config().to_dict(), seeds=seeds, sampler=sampler,
                           trials=None if sampler == "grid" else int(ss.get(keys.SWEEP_TRIALS) or 8),
                           timeout_s=60 * minutes or None, objective=ss.get(keys.SWEEP_OBJECTIVE) or "")
    if not errs:
        errs += spec.problems()
    if not errs:
        from tl_core.preflight import check

        first = {p.path: (p.values[0] if p.values is not None else p.low) for p in params}
        errs += check(sweep.apply(spec.base, first, seeds[0]))
    if errs:
        ss[keys.SWEEP_ERRORS] = errs
        return
    ss.pop(keys.SWEEP_ERRORS, None)
    name = sweep.new_study_name()
    store = sweep_view.storage()
    study = sweep.create_study(spec, store, name, origin="dashboard")
    study.set_user_attr("owner", resources.owner_id())
    sweep.drive(resources.get_manager(), store, name, resources.owner_id())
    ss[keys.SWEEP_PICK] = name


def render_form() -> None:
    ss = st.session_state
    presets = resources.presets()
    c1, c2, c3, c4 = st.columns([3, 2, 1, 1.3])
    c1.selectbox("Domains (source → target)", list(presets), key=keys.SWEEP_PRESET,
                 format_func=lambda k: presets[k]["title"])
    backbones = [b["name"] for b in resources.backbones() if not str(b["name"]).startswith("run:")]
    c2.selectbox("Backbone", backbones, key=keys.SWEEP_BACKBONE, help="Unless you sweep the backbone below.")
    c3.number_input("Epochs", 1, 200, 3, key=keys.SWEEP_EPOCHS)
    c4.number_input("Train images", 0, 100_000, 1000, step=250, key=keys.SWEEP_MAX_TRAIN,
                    help="Training images per domain for every run (0: all). Fewer: a faster sweep.")
    choices = {f.path: f for f in sweep_view.field_choices()}
    st.multiselect("Fields to sweep", list(choices), key=keys.SWEEP_FIELDS,
                   format_func=lambda p: f"{choices[p].label} ({p})",
                   help="Any other RunConfig field: type it below as PATH=VALUES.")
    picked = ss.get(keys.SWEEP_FIELDS) or []
    cols = st.columns(2) if picked else []
    for i, path in enumerate(picked):
        f = choices[path]
        with cols[i % 2]:
            if f.options is not None:
                st.multiselect(f.label, list(f.options), key=keys.SWEEP_VALUES_PREFIX + path)
            else:
                st.text_input(f"{f.label}: values, or a range LOW:HIGH (LOW:HIGH:log)", key=keys.SWEEP_VALUES_PREFIX + path,
                              placeholder=f.example)
    st.text_area("More fields (one PATH=VALUES a line, e.g. method.params.lambda_max=0.5,1)", key=keys.SWEEP_MORE,
                 height=68)
    c1, c2, c3, c4 = st.columns([1, 1.6, 1, 1])
    c1.text_input("Seeds", "0, 1", key=keys.SWEEP_SEEDS, help="Every setting runs once per seed.")
    c2.radio("Sampler", list(sweep.SAMPLERS), key=keys.SWEEP_SAMPLER, horizontal=True,
             format_func=lambda s: {"grid": "grid", "random": "random", "tpe": "TPE"}[s],
             help="; ".join(f"{k}: {v}" for k, v in sweep.SAMPLERS.items()) + ". Grid tries every combination.")
    c3.number_input("Trials", 1, 500, 8, key=keys.SWEEP_TRIALS, disabled=ss.get(keys.SWEEP_SAMPLER) == "grid",
                    help="Settings to try (random and TPE); grid tries every combination.")
    c4.number_input("Minutes", 0, 24 * 60, 0, key=keys.SWEEP_MINUTES,
                    help="Time budget: no new trial starts after it (0: none).")
    crit = sweep.criteria()
    c1, c2 = st.columns([3, 1], vertical_alignment="bottom")
    c1.selectbox("Objective (no target labels)", list(crit), key=keys.SWEEP_OBJECTIVE,
                 index=list(crit).index(sweep.default_criterion()) if sweep.default_criterion() in crit else 0,
                 format_func=lambda c: f"{sweep.criterion_label(c)} ({'higher' if crit[c] else 'lower'} is better)",
                 help="Trials are compared by this label-free score (mean over the seeds). Target accuracy is "
                      "shown as the oracle's choice only: it needs target labels.")
    if c2.button("Start sweep", key=keys.SWEEP_START, type="primary", disabled=not access.may_act(), width="stretch",
                 help=None if access.may_act() else access.why_read_only()):
        start()
    for msg in ss.get(keys.SWEEP_ERRORS) or []:
        st.error(widgets.plain(msg))


def render_progress(name: str, study, spec, store: str) -> bool:
    """Progress bar, ETA, Stop/Resume; True while the sweep is being worked on in this server."""
    prog = sweep.progress(study, spec)
    drv = sweep.driver(store, name)
    active = drv is not None
    total = prog["total"]
    frac = min(1.0, prog["done"] / total) if total else 0.0
    if prog["finished"]:
        text = f"Finished: {prog['done']} runs"
    else:
        eta = "" if prog["eta_s"] is None else f" · about {runinfo.fmt_duration(prog['eta_s'])} left"
        state = "running" if active else ("stopped" if prog["stopped"] else "not running (resume it)")
        text = f"{prog['done']} of {total if total else '?'} runs · {state}{eta}"
    if prog["finished"]:
        st.progress(1.0, text=text)
    else:
        c1, c2 = st.columns([6, 1], vertical_alignment="bottom")
        c1.progress(frac, text=text)
        if active:
            if c2.button("Stop", key=keys.SWEEP_STOP, disabled=not access.may_act(), width="stretch",
                         help="Cancels its queued runs and stops the running one; Resume goes on later."):
                sweep.stop(store, name)
                st.rerun()
        elif c2.button("Resume", key=keys.SWEEP_RESUME, disabled=not access.may_act(), width="stretch",
                       help="Runs the settings not finished yet; finished ones are kept."):
            study.set_user_attr("stopped", False)
            sweep.drive(resources.get_manager(), store, name, resources.owner_id())
            st.rerun()
    error = sweep.driver_error(store, name)
    if error and not active:
        st.error(widgets.plain(f"The sweep stopped on an error: {error}"))
    return active and not prog["finished"]


def render_results(study, spec) -> None:
    res = sweep.results(study, spec)
    crit = sweep.criterion_label(spec.objective)
    c1, c2 = st.columns(2)
    with c1.container(border=True):
        if res.chosen is None:
            st.markdown("**Label-free choice**: no setting has finished yet.")
        else:
            st.markdown(f"**Label-free choice**: {widgets.plain(res.chosen.label)}")
            st.caption(f"best {widgets.plain(crit).lower()} ({spec.objective} {res.chosen.score_mean:.4f} ± "
                       f"{res.chosen.score_std:.4f}) · its target acc {sweep.fmt_pct(res.chosen.target_mean)}")
    with c2.container(border=True):
        if res.oracle is None:
            st.markdown(f"**Best target accuracy** ({sweep.ORACLE_LABEL}): no setting has finished yet.")
        else:
            st.markdown(f"**Best target accuracy**: {widgets.plain(res.oracle.label)}")
            st.caption(f"{sweep.ORACLE_LABEL} · target acc {sweep.fmt_pct(res.oracle.target_mean)} ± "
                       f"{100 * (res.oracle.target_std or 0):.1f} · for comparison only")
    rows = sweep_view.table_rows(res)
    if rows:
        st.dataframe(pd.DataFrame(rows), hide_index=True, width="stretch",
                     column_config={"Setting": st.column_config.TextColumn(width="large",
                                                                           help="★: the label-free choice")})
    fig = sweep_view.parallel_figure(res)
    if fig is not None:
        st.plotly_chart(fig, width="stretch", config=CHART_CONFIG)
    figs = [f for f in (sweep_view.param_figure(res, p) for p in spec.params) if f is not None]
    cols = st.columns(min(3, len(figs))) if figs else []
    for i, f in enumerate(figs):
        cols[i % len(cols)].plotly_chart(f, width="stretch", config=CHART_CONFIG)


def main() -> None:
    ss = st.session_state
    st.title("Sweep")
    st.caption("Try settings over seeds and compare them without target labels: grid, random or TPE search "
               "(Optuna). Runs go through the same queue as every run; the command line: `python -m tl_core "
               "sweep` (docs/SWEEPS.md).")
    store = sweep_view.storage()
    try:
        sweep_view.resume_after_restart()
    except Exception as exc:  # a damaged sweeps.db: say so, the rest of the page still shows what it can
        st.warning(widgets.plain(f"Interrupted sweeps could not be resumed: {exc}"))
    names = list(reversed(sweep.list_studies(store)))
    with st.expander("New sweep", expanded=not names or keys.SWEEP_ERRORS in ss):
        render_form()
    names = list(reversed(sweep.list_studies(store)))
    if not names:
        st.info("No sweep yet: pick fields and values above, then Start sweep.")
        return
    if ss.get(keys.SWEEP_PICK) not in names:
        ss[keys.SWEEP_PICK] = names[0]
    name = st.selectbox("Sweep", names, key=keys.SWEEP_PICK)
    study, spec = sweep.load_study(store, name)
    st.caption(widgets.plain(f"{' · '.join(p.describe() for p in spec.params)} · seeds "
                             f"{', '.join(map(str, spec.seeds))} · {spec.sampler} · objective: "
                             f"{sweep.criterion_label(spec.objective)}"))
    live = sweep.driver(store, name) is not None

    @st.fragment(run_every=REFRESH_S if live else None)
    def live_view() -> None:
        study_now, _ = sweep.load_study(store, name)
        still = render_progress(name, study_now, spec, store)
        render_results(study_now, spec)
        if live and not still:
            st.rerun()  # finished: stop refreshing

    live_view()


entry.require_app()
main()
