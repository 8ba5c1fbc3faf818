"""Adversarial Discriminative Domain Adaptation (ADDA).

Tzeng, Hoffman, Saenko, Darrell, "Adversarial Discriminative Domain Adaptation", CVPR 2017.
Two phases with untied encoders. Phase 1 trains the source encoder (the run's backbone) and the
classifier (the head) on source labels, with the run's optimiser. Phase 2 initialises a target
encoder from the source encoder and trains it against a domain discriminator with the GAN loss and
inverted labels: the discriminator learns source = 1, target = 0; the target encoder learns to make
the discriminator say "source" for target images (Eq. 9 of the paper). The source encoder and the
classifier stay fixed in phase 2. The target domain is then classified as head(target encoder(x)),
the source domain as head(source encoder(x)).

As in the paper's digit experiments, the discriminator is an MLP of 500-500 ReLU units (no
normalisation layer: it sees one domain at a time in the encoder's step), and both phase-2 parts are
trained with Adam (lr 2e-4, β1 0.5). The target encoder keeps the frozen stages the source encoder has
when phase 2 begins, so the frozen-stage cache feeds both encoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from tl_core.methods._base import Method, StepChart, param, register
from tl_core.methods.finetune import weighted_cross_entropy

_OWN = "_adda."  # prefix of the checkpoint entries that are not module weights


@dataclass
class ADDAParams:
    source_phase: float = param(0.5, "Phase 1 share", "Fraction of the training steps spent in phase 1 (source "
                                "encoder + classifier on source labels); the rest trains the target encoder against "
                                "the discriminator.", min=0, max=1, min_open=True, max_open=True, step=0.05)
    disc_hidden: int = param(500, "Discriminator width", "Hidden units in each layer of the domain discriminator "
                             "(paper: 500).", min=1, step=50)
    disc_layers: int = param(2, "Discriminator layers", "Hidden layers of the domain discriminator (paper: 2).",
                             min=1, max=8, step=1)
    disc_lr: float = param(2e-4, "Discriminator learning rate", "Adam learning rate of the discriminator "
                           "(paper: 0.0002).", min=0, max=1, min_open=True, step=1e-4)
    target_lr: float = param(2e-4, "Target encoder learning rate", "Adam learning rate of the target encoder "
                             "(paper: 0.0002).", min=0, max=1, min_open=True, step=1e-4)
    beta1: float = param(0.5, "Adam β1", "First-moment decay of both phase-2 Adam optimisers (paper: 0.5).",
                         min=0, max=1, max_open=True, step=0.05)
    beta2: float = param(0.999, "Adam β2", "Second-moment decay of both phase-2 Adam optimisers (paper: "
                         "Adam's default 0.999).", min=0, max=1, max_open=True, step=0.001)


@register
class ADDA(Method):
    name = "adda"
    title = "ADDA"
    description = ("Adversarial discriminative adaptation: a source encoder trained on labels, then a separate target "
                   "encoder trained to fool a domain discriminator.")
    citation = "Tzeng et al., Adversarial Discriminative Domain Adaptation, CVPR 2017"
    Params = ADDAParams
    choice_help = {"source": "ADDA: source encoder on source labels, then a target encoder trained against a "
                             "domain discriminator (unlabelled target images)"}
    uses_target = True
    phases = ("source encoder + classifier on source labels", "target encoder vs discriminator")
    # Phase 2's discriminator loss is logged as loss_domain (the loss chart's dotted line); the run's learning rate
    # chart shows phase 1's schedule only (phase 2 steps its own Adam optimisers at a constant rate).
    step_charts = (StepChart("domain_acc", "domain_accuracy", "ADDA discriminator accuracy (%) per step (phase 2)"),)

    def __init__(self, ctx: Any) -> None:
        super().__init__(ctx)
        import torch
        from torch import nn

        p = self.params
        layers: list[nn.Module] = []
        width = ctx.feature_dim
        for _ in range(p.disc_layers):
            layers += [nn.Linear(width, p.disc_hidden), nn.ReLU()]
            width = p.disc_hidden
        layers.append(nn.Linear(width, 1))
        self.discriminator = self.add_module("discriminator", nn.Sequential(*layers))
        self.opt_disc = torch.optim.Adam(self.discriminator.parameters(), lr=p.disc_lr, betas=(p.beta1, p.beta2))
        self.target_encoder: Any = None
        self.opt_target: Any = None
        self.in_phase2 = False  # the target encoder has been initialised from the source encoder
        self.target_frozen = 0  # stages of the target encoder frozen (those of the source encoder then)
        self._scalers: dict[str, Any] = {}
        self._saved_scalers: dict[str, Any] = {}

    # ------------------------------------------------------------- parts
    def start(self, run: Any) -> None:
        import copy

        # A placeholder with the backbone's shape, so a checkpoint written in phase 2 loads into it; it becomes
        # a copy of the trained source encoder at the first step of phase 2.
        self.target_encoder = self.add_module("target_encoder", copy.deepcopy(run.model.backbone))
        self.target_frozen = run.model.backbone.frozen_stages

    def param_groups(self, lr: float) -> list[dict[str, Any]]:
        return []  # the discriminator and the target encoder have their own Adam optimisers

    def _make_target_optimiser(self) -> None:
        import torch

        from tl_core.backbones import freeze_stages

        p = self.params
        freeze_stages(self.target_encoder, self.target_frozen)
        params = [q for q in self.target_encoder.parameters() if q.requires_grad]
        self.opt_target = torch.optim.Adam(params, lr=p.target_lr, betas=(p.beta1, p.beta2))

    def _scaler(self, name: str, opt: Any) -> Any:
        """One GradScaler per phase-2 optimiser, on when the run's is (float16 AMP)."""
        import torch

        if name not in self._scalers:
            self._scalers[name] = torch.amp.GradScaler("cuda", enabled=opt.scaler.is_enabled())
            saved = self._saved_scalers.pop(name, None)  # a resumed run's scale goes on
            if saved:
                self._scalers[name].load_state_dict(saved)
        return self._scalers[name]

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        state[_OWN + "in_phase2"] = int(self.in_phase2)
        state[_OWN + "target_frozen"] = int(self.target_frozen)
        state[_OWN + "opt_disc"] = self.opt_disc.state_dict()
        if self.opt_target is not None:
            state[_OWN + "opt_target"] = self.opt_target.state_dict()
        for name, scaler in self._scalers.items():
            state[_OWN + "scaler_" + name] = scaler.state_dict()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        own = {k[len(_OWN):]: v for k, v in state.items() if k.startswith(_OWN)}
        super().load_state_dict({k: v for k, v in state.items() if not k.startswith(_OWN)})
        self.in_phase2 = bool(own.get("in_phase2", 0))
        self.target_frozen = int(own.get("target_frozen", self.target_frozen))
        self.opt_disc.load_state_dict(own["opt_disc"])
        if self.in_phase2:
            self._make_target_optimiser()
            self.opt_target.load_state_dict(own["opt_target"])
        self._saved_scalers = {k[len("scaler_"):]: v for k, v in own.items() if k.startswith("scaler_")}

    # ------------------------------------------------------------- steps
    def phase(self, progress: float) -> int:
        """1 or 2: which phase the step at ``progress`` belongs to."""
        return 1 if progress < self.params.source_phase else 2

    def train_step(self, batch: Any, model: Any, progress: float, opt: Any) -> dict[str, float]:
        if self.phase(progress) == 1:
            with opt.autocast():
                logits = model.head(model.features(batch.x_src))
                loss = weighted_cross_entropy(logits, batch.y_src, batch.w_src)
            acc = (logits.argmax(1) == batch.y_src).float().mean()
            return {"phase": 1, "loss": opt.step(loss), "loss_task": loss.detach(), "train_acc": acc}
        return self._adversarial_step(batch, model, opt)

    def _target_features(self, x: Any, model: Any) -> Any:
        """Target-encoder features of inputs as the loop hands them out (images or frozen-stage outputs)."""
        if model.cached:
            return self.target_encoder.forward_from(x, model.cached)
        return self.target_encoder(model.normalise(x))

    def _adversarial_step(self, batch: Any, model: Any, opt: Any) -> dict[str, float]:
        import torch
        import torch.nn.functional as F

        from tl_core.optim import check_finite

        if not self.in_phase2:  # the first step of phase 2: the target encoder starts as the source encoder
            self.target_frozen = model.backbone.frozen_stages
            self.target_encoder.load_state_dict(model.backbone.state_dict())
            self._make_target_optimiser()
            self.in_phase2 = True
        opt.last_penalty = None  # the run's optimiser does not step in phase 2: no extra penalty applies
        scale_d, scale_t = self._scaler("disc", opt), self._scaler("target", opt)
        lr = self.params.target_lr

        was = model.backbone.training
        model.backbone.train(False)  # the source encoder is fixed: no gradient, no BatchNorm statistics
        with opt.autocast():
            with torch.no_grad():
                f_s = model.features(batch.x_src)
            f_t = self._target_features(batch.x_tgt, model)
            # Discriminator step: source = 1, target = 0.
            d_in = torch.cat([f_s, f_t.detach()])
            d_logits = self.discriminator(d_in).squeeze(1).float()
        model.backbone.train(was)
        n_s = f_s.shape[0]
        d_true = torch.cat([torch.ones(n_s, device=d_logits.device),
                            torch.zeros(d_logits.shape[0] - n_s, device=d_logits.device)])
        loss_d = F.binary_cross_entropy_with_logits(d_logits, d_true)
        value_d = float(loss_d.detach())
        check_finite(value_d, opt.where, self.params.disc_lr)
        self.opt_disc.zero_grad(set_to_none=True)
        scale_d.scale(loss_d).backward()
        scale_d.step(self.opt_disc)
        scale_d.update()
        domain_acc = ((d_logits.detach() > 0).float() == d_true).float().mean()

        # Target encoder step, inverted labels: make the (updated) discriminator call target features source.
        with opt.autocast():
            t_logits = self.discriminator(f_t).squeeze(1).float()
        loss_t = F.binary_cross_entropy_with_logits(t_logits, torch.ones_like(t_logits))
        value_t = float(loss_t.detach())
        check_finite(value_t, opt.where, lr)
        self.opt_target.zero_grad(set_to_none=True)
        scale_t.scale(loss_t).backward()
        scale_t.step(self.opt_target)
        scale_t.update()
        self.discriminator.zero_grad(set_to_none=True)  # its gradient from the encoder's step is not its own
        return {"phase": 2, "loss": value_d + value_t, "loss_domain": value_d, "loss_target": value_t,
                "domain_acc": domain_acc}

    # -------------------------------------------------------- evaluation
    def encoder(self, domain: str, model: Any) -> Callable[[Any], Any]:
        """Source through the source encoder; target through the target encoder once phase 2 has begun
        (before, the target encoder would be the source encoder anyway)."""
        if domain == "source" or not self.in_phase2:
            return model.features_eval
        return lambda x: self.target_encoder(model.normalise(x))
