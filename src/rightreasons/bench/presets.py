"""Presets: the published comparisons, as far as the papers specify them.

Each preset names datasets, methods, seeds and settings, and says for every setting whether it comes
from the paper or is our choice (the papers give few hyperparameters).
Methods a preset lists but that are not registered (yet) are skipped with a warning.

Settings that differ between the datasets of a preset (Chen et al. train and evaluate at eps 0.3 on MNIST
and 0.1 on Fashion-MNIST) are ``dataset_params`` (dataset -> method -> hyperparameters, over ``params``) and
``robustness`` (dataset -> the runs' ``robustness`` config field); :meth:`Preset.refine` applies them to the
run specs the plan made from the dataset-independent settings.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional, Sequence

from ..errors import UserError
from ..train.run import resolved_config
from .harness import RunSpec


@dataclass(frozen=True)
class Preset:
    name: str
    title: str
    datasets: tuple[str, ...]
    methods: tuple[str, ...]
    seeds: int = 3
    #: training settings; None = the TrainConfig default (the dataset's epochs and model, Adam lr 3e-3 with
    #: cosine decay)
    epochs: Optional[int] = None
    model: Optional[str] = None
    lr: Optional[float] = None
    lr_schedule: Optional[str] = None
    #: method -> hyperparameters (anything not given: the method's defaults)
    params: dict = field(default_factory=dict)
    #: dataset -> data options
    data_options: dict = field(default_factory=dict)
    #: dataset -> method -> hyperparameters for that dataset alone (over ``params``; a --param given wins)
    dataset_params: dict = field(default_factory=dict)
    #: dataset -> the ``robustness`` config field of its runs (the robustness report in metrics.json)
    robustness: dict = field(default_factory=dict)
    #: dataset -> training settings (TrainConfig fields such as model and epochs) for that dataset alone; a flag
    #: given on the command line wins
    dataset_settings: dict = field(default_factory=dict)
    #: one line per setting: "paper: ..." or "ours: ..."
    notes: tuple[str, ...] = ()

    def params_for(self, dataset: str, method: str) -> dict:
        """The preset's hyperparameters of ``method`` on ``dataset``: ``params``, then ``dataset_params``."""
        return {**self.params.get(method, {}), **self.dataset_params.get(dataset, {}).get(method, {})}

    def refine(self, specs: Sequence[RunSpec], given: Optional[dict] = None,
               flags: Optional[dict] = None) -> list[RunSpec]:
        """``specs`` (planned from the dataset-independent settings) with the per-dataset training settings
        (unless ``flags``, the TrainConfig fields given on the command line, set them), hyperparameters (under
        ``given``, the scoped --param assignments: method -> {key: value}) and robustness settings."""
        given, flags = given or {}, flags or {}
        out = []
        for spec in specs:
            config = spec.config
            settings = {k: v for k, v in self.dataset_settings.get(config.data, {}).items() if flags.get(k) is None}
            extra = {**self.dataset_params.get(config.data, {}).get(config.method, {}), **given.get(config.method, {})}
            robustness = self.robustness.get(config.data, config.robustness)
            if settings or extra or robustness != config.robustness:
                config = resolved_config(config.replace(params={**config.params, **extra}, robustness=robustness,
                                                        **settings))
            out.append(RunSpec(config, spec.dir))
        return out


PRESETS = {p.name: p for p in (
    Preset(
        name="ross2017",
        title="Ross, Hughes & Doshi-Velez 2017 (RRR): Decoy-MNIST and Toy Colors, ERM vs RRR",
        datasets=("decoy-mnist", "toy-colors"),
        methods=("erm", "rrr"),
        epochs=30, model="mlp-ross", lr=1e-3, lr_schedule="constant",
        params={"rrr": {"lam": 10.0, "target": "log_prob_sum", "norm": "squared_l2"}},
        notes=(
            "paper: datasets Decoy-MNIST (swatch shade a function of y in train, not in test) and Toy Colors "
            "(corner rule vs top-middle rule, corners annotated)",
            "paper: loss = CE + lam * sum_n sum_d (A_nd d/dx_d sum_k log p_nk)^2 (rrr target=log_prob_sum, "
            "norm=squared_l2)",
            "paper: a fully connected network with 2 hidden layers (model mlp-ross, 784-50-30-10)",
            "ours: lam = 10 for inputs in [0, 1] and a mean over the batch (Ross et al. used 1000 on 0..255 "
            "inputs with a sum); Adam lr 1e-3, batch 256, 30 epochs, 3 seeds",
        ),
    ),
    Preset(
        name="heo2023",
        title="Heo, Piratla, Wicker & Weller 2023: Decoy-MNIST (half-image variant), regularisation vs robustness",
        datasets=("decoy-mnist-half",),
        methods=("erm", "group_dro", "rrr", "cdep", "avg_ex", "pgd_ex", "ibp_ex", "pgd_ex+rrr", "ibp_ex+rrr"),
        data_options={"decoy-mnist-half": {"val": "decorrelated"}},
        notes=(
            "paper: dataset Decoy-MNIST with the label-revealing half masked (decoy-mnist-half)",
            "paper: methods ERM, G-DRO, Grad-Reg (rrr), CDEP, Avg-Ex, PGD-Ex, IBP-Ex, PGD-Ex+Grad-Reg, "
            "IBP-Ex+Grad-Reg; mean +- std over runs",
            "paper: the perturbation size starts small and increases during training (our eps ramps)",
            "paper's code: validation shade drawn at random (val=decorrelated)",
            "paper's code: a 3 x 512 fully connected network, Adam lr 3e-4, batch 64, 100 epochs; ours: the "
            "dataset's default model cnn-strided (two stride-2 3x3 convs of 16 and 32 channels, 256 hidden units)",
            "ours: every method's default hyperparameters, groups = label for every method (so G-DRO balances "
            "classes), Adam lr 3e-3 with cosine decay, batch 64 and 20 epochs (the dataset's defaults), 3 seeds, "
            "last epoch kept",
        ),
    ),
)}


def _chen2019(name: str, title: str, epochs: Optional[int], model: Optional[str], training: dict, examples: int,
              notes: tuple[str, ...], mnist: Optional[dict] = None, mnist_ramp: tuple[int, int] = (0, 0)) -> Preset:
    """Chen et al.'s comparison: per dataset their training radius, and their evaluation through the runs'
    ``robustness`` setting; ``training`` = the attack settings during training (method -> params); ``mnist``
    = training settings for MNIST alone, ``mnist_ramp`` = (warm-up, ramp) epochs of eps on MNIST."""
    radius = {"mnist": 0.3, "fashion-mnist": 0.1}
    attack_k = {"mnist": 200, "fashion-mnist": 100}
    return Preset(
        name=name, title=title, datasets=("mnist", "fashion-mnist"), methods=("erm", "madry", "ig_norm", "ig_sum_norm"),
        seeds=1, epochs=epochs, model=model, params=training,
        dataset_params={d: {m: {"eps": eps, **(dict(zip(("warmup_epochs", "ramp_epochs"), map(float, mnist_ramp)))
                                             if d == "mnist" and any(mnist_ramp) else {})}
                            for m in ("madry", "ig_norm", "ig_sum_norm")} for d, eps in radius.items()},
        dataset_settings={"mnist": dict(mnist)} if mnist else {},
        robustness={d: {"eps": eps, "k": 100, "attack_k": attack_k[d], "attack_steps": 100, "step_size": 0.01,
                        "restarts": 3, "ig_steps": 50, "examples": examples, "region": "all"}
                    for d, eps in radius.items()},
        notes=(
            "paper: datasets MNIST and Fashion-MNIST; methods NATURAL (erm), Madry et al. (madry), IG-NORM, "
            "IG-SUM-NORM; single runs (so 1 seed here)",
            "paper: l_inf training radius eps 0.3 on MNIST and 0.1 on Fashion-MNIST (the eps of madry, ig_norm "
            "and ig_sum_norm per dataset)",
            "paper: evaluation at the training radius: natural accuracy, accuracy under l_inf PGD, and the top-k "
            "intersection and Kendall's tau of IG saliency maps (50 points) under Ghorbani et al.'s top-k attack, "
            "100 steps of 0.01, 3 random restarts, k = 100, attack_k = 200 on MNIST and 100 on Fashion-MNIST, "
            "on correctly classified test images",
            f"ours: the first {examples} test images (their correctly classified ones are attacked); the PGD "
            "accuracy attack is ours (20 sign steps of 2.5 * eps / 20); the first restart starts at x, the other "
            "two at uniform random points of the ball",
            *notes,
        ),
    )


PRESETS.update({p.name: p for p in (
    _chen2019(
        "chen2019", "Chen, Wu, Rastogi, Liang & Jha 2019 (robust attribution): MNIST and Fashion-MNIST, CPU-sized",
        epochs=None, model=None, training={}, examples=200, mnist={"model": "cnn-strided", "epochs": 6},
        mnist_ramp=(1, 2),
        notes=(
            "paper: a two-conv-layer CNN trained with 40 PGD steps of 0.01 and IG with 50 points (10 in the "
            "attack), IG-NORM lam 1 and IG-SUM-NORM beta 0.1 on MNIST",
            "ours: on Fashion-MNIST the dataset's default model (mlp, 784-100-100-10) for 15 epochs (the dataset's "
            "default); MNIST: model cnn-strided (two stride-2 3x3 convs of 16 and 32 channels, 256 hidden units) "
            "for 6 epochs, with eps 0 in the first epoch and growing linearly to 0.3 over the next two (at eps 0.3 "
            "from the start, madry collapses to a constant predictor; the MLP learns the robust objectives but its "
            "NATURAL saliency is already as stable as theirs)",
            "ours: every method's default training attack (madry 10 PGD steps, ig_norm / ig_sum_norm 2 PGD steps "
            "and 4 IG points, 2 in the attack), lam 1 and beta 0.1 on both datasets, Adam lr 3e-3 with cosine "
            "decay, batch 256: what a CPU affords",
        ),
    ),
    _chen2019(
        "chen2019-full", "Chen et al. 2019 with their training attack, a CNN and longer training (for a GPU)",
        epochs=50, model="cnn",
        training={"madry": {"steps": 40, "step_size": 0.01},
                  "ig_norm": {"pgd_steps": 40, "step_size": 0.01, "ig_steps": 50, "pgd_ig_steps": 10},
                  "ig_sum_norm": {"pgd_steps": 40, "step_size": 0.01, "ig_steps": 50, "pgd_ig_steps": 10}},
        examples=1000, mnist_ramp=(1, 10),
        notes=(
            "paper: a two-conv-layer CNN trained with 40 PGD steps of 0.01 and IG with 50 points (10 in the "
            "attack), IG-NORM lam 1 and IG-SUM-NORM beta 0.1 on MNIST (used here on both datasets)",
            "ours: model cnn (two 3x3 convs of 16 and 32 channels with max pooling, 128 hidden units), not their "
            "exact architecture; 50 epochs, i.e. longer training as in their code (their exact training length "
            "is not verified here), on MNIST with eps 0 in the first epoch, then growing linearly to 0.3 over 10; "
            "Adam lr 3e-3 with cosine decay, batch 256",
        ),
    ),
)})


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
