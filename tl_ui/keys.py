"""Session-state keys and page paths, as named constants namespaced by page.

Widget keys of the Setup page are built from the RunConfig field path they edit
(``setup_key("optim.lr") == "setup.f.optim.lr"``), so a validation message prefixed by a
field path finds its widget.
"""

from __future__ import annotations

# ------------------------------------------------------------------ pages
PAGE_HOME = "pages/home.py"
PAGE_SETUP = "pages/setup.py"
PAGE_MONITOR = "pages/monitor.py"
PAGE_RUNS = "pages/runs.py"
PAGE_PREDICT = "pages/predict.py"
PAGE_SWEEP = "pages/sweep.py"
PAGE_PRESENT = "pages/present.py"

# --------------------------------------------------------------- app-wide
#: This browser session's owner id (a short uuid), passed as ``owner=`` to submit.
OWNER = "app.owner"
#: Query parameter that carries the owner id across a reload of the page.
OWNER_QUERY_PARAM = "owner"
#: Ids of the runs this session started, newest last.
STARTED = "app.started"

# ------------------------------------------------------------------- home
HOME_RUN_PREFIX = "home.run."          # + preset key: the preset card's button
HOME_COMPARE = "home.compare"          # the "Which adaptation method?" demo's button
HOME_FOLDER = "home.folder"            # the "own image folders" card's button
HOME_ERROR = "home.error"              # a message from the last click, shown once
HOME_PRETRAINING = "home.pretraining"  # the "What is pretraining worth?" demo's button (tl_ui/pretraining_view.py)
HOME_PRETRAINING_STOP = "home.pretraining.stop"
HOME_PRESENT = "home.present"          # the demos open in the Present view instead of the Monitor

# ------------------------------------------------------------------ setup
SETUP_FIELD_PREFIX = "setup.f."
#: Which preset the Setup form was last filled from ("folder" for own folders).
SETUP_PRESET = "setup.preset"
#: Set by another page to ask Setup to refill its form from this preset.
SETUP_REQUEST_PRESET = "setup.request_preset"
#: The method choice: a method's name, with "@target" when it trains on target labels
#: ("finetune", "finetune@target", "dann"); see tl_core.config.method_key.
SETUP_METHOD = "setup.method"
SETUP_START = "setup.start"
SETUP_BASELINE = "setup.baseline"       # 'Also run its baseline' (tl_ui/gain_view.py)
#: Signed in with the server's password (tl_ui.access); the sign-in form's widgets.
SIGNED_IN = "app.signed_in"
SIGN_IN_FORM = "app.sign_in"
SIGN_IN_PASSWORD = "app.sign_in.password"
SIGN_OUT = "app.sign_out"
#: Which earlier run's backbone, when the backbone choice is a group of them (see pages/setup.py).
SETUP_SAVED_BACKBONE = "setup.saved_backbone"
SETUP_BACKBONE_NOTE = "setup.backbone_note"       # what changing the backbone set, and why (a caption)
SETUP_ERROR = "setup.error"


def setup_key(path: str) -> str:
    """Widget key of the Setup field that edits the RunConfig field ``path``."""
    return SETUP_FIELD_PREFIX + path


# ---------------------------------------------------------------- monitor
#: Set by Home/Setup/sidebar to ask the Monitor to show these run ids (consumed once).
MONITOR_REQUEST = "monitor.request"
#: The Monitor's run multiselect.
MONITOR_PICK = "monitor.pick"
MONITOR_STOP_PREFIX = "monitor.stop."            # + run id
MONITOR_CONFIRM_PREFIX = "monitor.confirm_stop."  # + run id (someone else's run)
MONITOR_RESUME_PREFIX = "monitor.resume."        # + run id
MONITOR_MESSAGE = "monitor.message"              # a message from the last action, shown once
MONITOR_FS_COLOR = "monitor.fs.color"             # feature space: colour by domain or by class
MONITOR_FS_RUN = "monitor.fs.run"                 # feature space: run whose epoch details are shown
MONITOR_FS_EPOCH = "monitor.fs.epoch"             # feature space: epoch of the confusion matrix and gallery


def monitor_fs_epoch_widget(newest_epoch: int) -> str:
    """The per-class epoch slider's key while ``newest_epoch`` is the newest (a new widget per epoch; see
    tl_ui/feature_space.py); the user's choice itself is kept under MONITOR_FS_EPOCH."""
    return f"{MONITOR_FS_EPOCH}.upto{int(newest_epoch)}"
MONITOR_FS_PAIR_PREFIX = "monitor.fs.pair."       # + run id: the "before and now" expander is open
MONITOR_DISTANCE_OPEN = "monitor.distance.open"    # the "Domain distance over training" expander is open
MONITOR_DETAILS_OPEN = "monitor.details.open"      # the "Per-class results" expander is open
MONITOR_STEP_FIGURES = "monitor.step_figures"     # (run ids, time built, figures) of the per-step charts
MONITOR_FS_VERSION = "monitor.fs.version"         # (run, projected snapshots, epochs) the feature section drew
MONITOR_STEPS_BY_EPOCH = "monitor.steps_by_epoch"  # the step charts' timer is off: each epoch's rerun redraws them
MONITOR_FS_CHAINED = "monitor.fs.chained"         # this page run is the rerun for data that came during the last one

# ------------------------------------------------------------------- runs
RUNS_TABLE_PREFIX = "runs.table."      # + generation: the table's selection
RUNS_TABLE_GEN = "runs.table_gen"      # bumped when the set of runs changes (resets the selection)
RUNS_TABLE_IDS = "runs.table_ids"      # the run ids the table showed, in order
RUNS_ACT_ON = "runs.act_on"            # which selected run rename/download act on
RUNS_RENAME = "runs.rename"
RUNS_RENAME_BUTTON = "runs.rename_button"
RUNS_CONFIRM_DELETE = "runs.confirm_delete"
RUNS_DELETE_BUTTON = "runs.delete_button"
RUNS_MESSAGE = "runs.message"
RUNS_X_AXIS = "runs.x_axis"
RUNS_PRESENT = "runs.present"           # opens the Present page on the selected runs
RUNS_EXPORT_FORMAT = "runs.export.format"   # which format the model export makes
RUNS_EXPORT_BUTTON = "runs.export.button"
RUNS_EXPORT_FILE = "runs.export.file"       # (run id, format, bytes, file name) of the last export, or an error
REPORT_BUTTON = "report.button"              # + ".monitor" / ".runs": Build report (tl_ui/report_view.py)
REPORT_FILE = "report.file"                  # + ".monitor" / ".runs": (run ids, HTML bytes, file name) or an error

# ---------------------------------------------------------------- predict
PREDICT_RUN = "predict.run"             # the finished run whose model predicts
PREDICT_SOURCE = "predict.source"       # upload images or a folder under the data root
PREDICT_UPLOAD = "predict.upload"
PREDICT_FOLDER = "predict.folder"
PREDICT_BUTTON = "predict.button"
PREDICT_RESULT = "predict.result"       # the last prediction: run id, rows, thumbnails, refused files

# ---------------------------------------------------------------- present
#: Set by Home (a demo opened in Present) to ask the Present page to show these run ids (consumed once).
PRESENT_REQUEST = "present.request"
PRESENT_PICK = "present.pick"          # the Present page's run multiselect
#: What the Present page last saw: the Monitor pick and Runs table selection (a change there is followed)
#: and its own pick (Streamlit drops a widget's state while another page shows).
PRESENT_SEEN = "present.seen"

# ------------------------------------------------------------------ sweep
SWEEP_PRESET = "sweep.preset"            # the base config's domain pair
SWEEP_BACKBONE = "sweep.backbone"        # the base config's backbone (when not swept)
SWEEP_EPOCHS = "sweep.epochs"
SWEEP_MAX_TRAIN = "sweep.max_train"      # training images per domain (0: all)
SWEEP_FIELDS = "sweep.fields"            # which fields are swept (multiselect of RunConfig paths)
SWEEP_VALUES_PREFIX = "sweep.values."    # + field path: its values or range
SWEEP_MORE = "sweep.more"                # any other field, PATH=VALUES per line
SWEEP_SEEDS = "sweep.seeds"
SWEEP_SAMPLER = "sweep.sampler"
SWEEP_TRIALS = "sweep.trials"            # budget in settings (random, tpe)
SWEEP_MINUTES = "sweep.minutes"          # budget in minutes (0: none)
SWEEP_OBJECTIVE = "sweep.objective"      # the label-free criterion
SWEEP_START = "sweep.start"
SWEEP_ERRORS = "sweep.errors"            # messages of the last Start, shown under the form
SWEEP_PICK = "sweep.pick"                # which sweep the results show
SWEEP_STOP = "sweep.stop"
SWEEP_RESUME = "sweep.resume"
