"""Presets: the published comparisons, as far as the papers specify them.

Each preset names datasets, methods, seeds and settings, and says for every setting whether it comes
from the paper or is our choice (the papers give few hyperparameters).
Methods a preset lists but that are not registered (yet) are skipped with a warning.

Settings that differ between the datasets of a preset (Chen et al. train and evaluate at eps 0.3 on MNIST
and 0.1 on Fashion-MNIST) are ``dataset_params`` (dataset -> method -> hyperparameters, over ``params``) and
``robustness`` (dataset -> the runs' ``robustness`` config field); :meth:`Preset.refine` applies them to the
run specs the plan made from the dataset-independent settings.

Presets of published datasets the user downloads (ISIC, plant) name a dataset prefix (``path_prefix``) instead
of datasets; ``bench --preset NAME --data-path PATH`` makes it ``PREFIX:PATH`` (:meth:`Preset.with_path`), and
their per-dataset settings are keyed by the prefix. ``origins`` says where each training setting comes from.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
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
    #: one line per setting: "paper: ...", "paper's code: ..." or "ours: ..."
    notes: tuple[str, ...] = ()
    #: more training settings (None = the TrainConfig default, or the dataset's batch size)
    batch_size: Optional[int] = None
    optimizer: Optional[str] = None
    weight_decay: Optional[float] = None
    select: Optional[str] = None
    #: a downloaded dataset's prefix (``isic``): the preset runs on ``PREFIX:PATH`` (see :meth:`with_path`)
    path_prefix: Optional[str] = None
    #: what data the preset needs and where to get it (for the error without a path)
    data_title: str = ""
    download: str = ""
    #: the PATH of :meth:`with_path`
    data_path: Optional[str] = None
    #: setting -> where it comes from: "paper", "paper's code" (the authors' published code) or "ours"
    origins: dict = field(default_factory=dict)

    @property
    def needs_path(self) -> bool:
        """True for a preset of a downloaded dataset that has no PATH yet."""
        return self.path_prefix is not None and self.data_path is None

    def missing_data(self, why: str = "give --data-path PATH") -> UserError:
        """The one-line error of a preset without its data: which dataset, and where to download it."""
        return UserError(f"preset {self.name} needs {self.data_title}: {why} (download it yourself: {self.download}; "
                         "see docs/real-datasets.md)")

    def with_path(self, path: str) -> "Preset":
        """The preset on ``PREFIX:path``: its datasets and every per-dataset setting keyed by the prefix moved to
        that spec. The path is kept as given."""
        if self.path_prefix is None:
            raise UserError(f"preset {self.name} trains on built-in datasets; --data-path is for the presets of "
                            f"downloaded datasets ({', '.join(path_presets())})")
        if not isinstance(path, str) or not path:
            raise self.missing_data("give a non-empty --data-path PATH")
        spec = f"{self.path_prefix}:{path}"

        def rekey(table: dict) -> dict:
            return {spec if k == self.path_prefix else k: v for k, v in table.items()}

        return replace(self, datasets=(spec,), data_path=path, data_options=rekey(self.data_options),
                       dataset_params=rekey(self.dataset_params), robustness=rekey(self.robustness),
                       dataset_settings=rekey(self.dataset_settings))

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
            out.append(replace(spec, config=config))
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


HEO_METHODS = ("erm", "group_dro", "rrr", "cdep", "avg_ex", "pgd_ex", "ibp_ex", "pgd_ex+rrr", "ibp_ex+rrr")
HEO_CODE = "the README of Heo et al.'s code, github.com/vihari/robust_mlx"
#: where each training setting of the real-data presets comes from
_HEO_ORIGINS = {"datasets": "paper", "methods": "paper", "metric": "paper", "split": "paper's code",
                "image_size": "paper's code", "optimizer": "paper's code", "lr": "paper's code",
                "weight_decay": "paper's code", "batch_size": "paper's code", "epochs": "paper's code",
                "selection": "paper's code", "model": "ours", "loss weighting": "ours", "hyperparameters": "ours",
                "seeds": "ours"}

PRESETS.update({p.name: p for p in (
    Preset(
        name="heo2023-isic",
        title="Heo, Piratla, Wicker & Weller 2023: ISIC (patches on benign lesions), regularisation vs robustness",
        datasets=(), methods=HEO_METHODS, path_prefix="isic",
        data_title="the ISIC skin-lesion images in Heo et al.'s layout (processed/no_cancer, "
                   "processed/patch_no_cancer_again, processed/cancer, segmentation)",
        download=f"the dataset splits linked from {HEO_CODE}; the images come from the ISIC archive, "
                 "www.isic-archive.com",
        epochs=50, lr=3e-4, lr_schedule="constant", optimizer="adamw", weight_decay=1e-4, batch_size=16,
        select="val_worst_group_accuracy",
        data_options={"isic": {"layout": "heo", "size": 299}},
        origins=dict(_HEO_ORIGINS),
        notes=(
            "paper: dataset ISIC, coloured patches on benign lesions only, masks marking the patches; groups "
            "benign without a patch, benign with a patch, malignant; robust accuracy, mean +- std over runs",
            "paper: methods ERM, G-DRO, Grad-Reg (rrr), CDEP, Avg-Ex, PGD-Ex, IBP-Ex, PGD-Ex+Grad-Reg, "
            "IBP-Ex+Grad-Reg",
            "paper's code: the authors' split (layout=heo: numpy default_rng(42) permutation of the sorted files, "
            "75% train, 10% val, the rest test) at 299 x 299 pixels (size=299)",
            "paper's code: AdamW, lr 3e-4, weight decay 1e-4, batch 16, 50 epochs, a constant lr (its milestones at "
            "100 and 150 epochs are never reached), the checkpoint with the best validation worst-group accuracy "
            "(select=val_worst_group_accuracy; they validate every 5 epochs, we every epoch)",
            "paper's code: a 4-conv network (32, 32, 64, 64 channels, two 512-unit layers) and class-weighted CE; "
            "ours: the dataset's default model cnn (two 3x3 convs of 16 and 32 channels with max pooling, 128 "
            "hidden units) and unweighted CE",
            "ours: every method's default hyperparameters (the authors tuned theirs per method and dataset), "
            "3 seeds",
        ),
    ),
    Preset(
        name="heo2023-plant",
        title="Heo, Piratla, Wicker & Weller 2023: plant phenotyping (background shortcut), regularisation vs "
              "robustness",
        datasets=(), methods=HEO_METHODS, path_prefix="plant",
        data_title="Heo et al.'s plant phenotyping images (rgb_data, rgb_dataset_splits, mask/preprocessed_masks.pyu)",
        download=f"the dataset splits linked from {HEO_CODE}",
        epochs=50, lr=3e-5, lr_schedule="constant", optimizer="adamw", weight_decay=1e-5, batch_size=16,
        select="val_worst_group_accuracy",
        data_options={"plant": {"fold": 0, "size": 224}},
        origins=dict(_HEO_ORIGINS),
        notes=(
            "paper: dataset plant phenotyping (sugar-beet leaves, healthy vs diseased), masks marking the "
            "background; groups = labels; robust accuracy, mean +- std over runs",
            "paper: methods ERM, G-DRO, Grad-Reg (rrr), CDEP, Avg-Ex, PGD-Ex, IBP-Ex, PGD-Ex+Grad-Reg, "
            "IBP-Ex+Grad-Reg",
            "paper's code: fold 0's split lists (fold=0) at 224 x 224 pixels (size=224), validation and test "
            "backgrounds filled with the training mean",
            "paper's code: AdamW, lr 3e-5, weight decay 1e-5, batch 16, 50 epochs (100 in their IBP-Ex runs), a "
            "constant lr, the checkpoint with the best validation worst-group accuracy "
            "(select=val_worst_group_accuracy)",
            "paper's code: a 4-conv network (32, 32, 64, 64 channels, two 1024-unit layers, initial weights scaled "
            "by 0.1) and class-weighted CE; ours: the dataset's default model cnn and unweighted CE",
            "ours: every method's default hyperparameters, 3 seeds",
        ),
    ),
    Preset(
        name="rieger2020-isic",
        title="Rieger, Singh, Murdoch & Yu 2020 (CDEP): ISIC, CDEP vs ERM and RRR",
        datasets=(), methods=("erm", "rrr", "cdep"), path_prefix="isic",
        data_title="the ISIC skin-lesion images in Rieger et al.'s layout (processed/no_cancer, processed/cancer, "
                   "segmentation)",
        download="the images of the ISIC archive, www.isic-archive.com, fetched and sorted by the ISIC scripts of "
                 "Rieger et al.'s code, github.com/laura-rieger/deep-explanation-penalization",
        epochs=10, lr=1e-3, lr_schedule="constant", optimizer="adam", weight_decay=1e-3, batch_size=32,
        params={"cdep": {"score": "softmax", "activation_rule": "cd", "bias_rule": "proportional"}},
        data_options={"isic": {"layout": "rieger", "dilate": 20, "size": 299}},
        origins={"datasets": "paper", "methods": "paper", "mask dilation": "paper", "split": "paper's code",
                 "image_size": "paper's code", "optimizer": "paper's code", "lr": "paper's code",
                 "weight_decay": "paper's code", "batch_size": "paper's code", "seeds": "paper's code",
                 "cdep rules": "paper's code", "epochs": "ours", "selection": "ours", "model": "ours",
                 "loss weighting": "ours", "hyperparameters": "ours"},
        notes=(
            "paper: dataset ISIC, coloured patches on benign lesions, the patch masks dilated by 20 x 20 (dilate=20); "
            "methods Vanilla (erm), RRR (rrr) and CDEP (cdep)",
            "paper's code: the split of its training script (layout=rieger: random_split after torch.manual_seed(0), "
            "80% train, 10% test, 10% val) at 299 x 299 pixels (size=299); 3 seeds",
            "paper's code: CDEP's rules (cdep score=softmax, activation_rule=cd, bias_rule=proportional); it sweeps "
            "the CDEP weight over 1, 10 and 100; ours: lam at its default for CDEP and RRR",
            "paper's code: Adam with PyTorch's default lr 1e-3 and weight decay 1e-3, batch 32, no schedule",
            "paper's code: an ImageNet-pretrained VGG16 of which only the classifier is trained (on precomputed "
            "features) for 5 epochs, the epoch of lowest validation loss kept, class-weighted CE; ours: the "
            "dataset's default model cnn trained from scratch (no pretrained weights are downloaded here) for 10 "
            "epochs, the last epoch kept, unweighted CE",
            "ours: no published numbers of this comparison are recorded here (bench/published.py), so its summary "
            "shows ours alone",
        ),
    ),
)})


def path_presets() -> list[str]:
    """The names of the presets of downloaded datasets (they need a PATH)."""
    return sorted(n for n, p in PRESETS.items() if p.path_prefix is not None)


def get_preset(name: str) -> Preset:
    try:
        return PRESETS[name]
    except KeyError:
        raise UserError(f"unknown preset {name!r}; known: {', '.join(sorted(PRESETS))}") from None
