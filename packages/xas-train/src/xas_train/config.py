"""Validated run configuration (YAML) for the trainer, the recipes and the cascade.

A config file holds one :class:`RunConfig`. Unknown keys and bad values are refused before any
training starts, with a message naming the key, the allowed values and the fix. Dotted
overrides (``training.lr=3e-4``) are applied on top of the file by :func:`load_config`.

Example::

    name: cu-expert
    recipe: expert
    data: {dataset: default, features: [chgnet], elements: [Cu], fidelity: FEFF-fast}
    model: {hidden_widths: [400, 400], dropout: 0.5}
    training: {lr: 1.0e-3, batch_size: 128, max_epochs: 1000, patience: 50}
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from xas_train.errors import ConfigError

RECIPES = ("expert", "universal", "tuned", "cross-fidelity")


class DataConfig(BaseModel):
    """Which spectra and features to train on.

    Attributes:
        dataset: path of an xas-data Zarr store, or ``default`` for the shipped dataset.
        features: featurizer names (``chgnet``) or full feature keys; several are concatenated
            column-wise in the given order.
        elements: absorbing elements; ``None`` means every element present at ``fidelity``.
        fidelity: the stored fidelity, e.g. ``FEFF``, ``FEFF-fast``, ``VASP``.
        train_split / val_split / test_split: split names in the store. With ``val_split: null``
            a ``holdout_fraction`` of the training materials is held out for early stopping.
        standardize: standardise each feature with the training mean/std (stored in the model).
        drop_nonfinite: drop sites whose features contain NaN/inf instead of refusing them.
        graph: with ``features: [graph]`` (graph models such as ``cgxas``/``xane3``), the
            settings of ``xas_features.graphs.CrystalGraphConfig`` (cutoff in Angstrom,
            max_neighbors, ...); one graph per site with the absorber flagged.
    """

    model_config = ConfigDict(extra="forbid")

    dataset: str = "default"
    features: list[str] = Field(default_factory=lambda: ["chgnet"], min_length=1)
    elements: list[str] | None = None
    fidelity: str = "FEFF-fast"
    train_split: str = "train"
    val_split: str | None = "val"
    holdout_fraction: float = Field(default=0.1, gt=0.0, lt=0.5)
    test_split: str | None = "test"
    standardize: bool = True
    drop_nonfinite: bool = False
    graph: dict[str, Any] = Field(default_factory=dict)


class ModelSection(BaseModel):
    """Architecture name plus its hyper-parameters (validated by the architecture itself).

    ``architecture: null`` means ``xasblock`` for a fresh model, or the checkpoint's
    architecture when ``init_from`` is set. Other keys are passed to the model's config class,
    which refuses unknown ones; ``input_dim``/``output_dim`` come from the data.
    """

    model_config = ConfigDict(extra="allow")

    architecture: str | None = None

    def params(self) -> dict[str, Any]:
        """The architecture's hyper-parameters (everything but ``architecture``)."""
        return dict(self.model_extra or {})


class TrainingConfig(BaseModel):
    """Optimisation settings.

    Attributes:
        lr: Adam learning rate. ``lr_finder: true`` replaces it with the finder's suggestion.
        batch_size: global batch (all ranks and accumulation steps together); the micro-batch
            per rank is ``batch_size / (world_size * grad_accum)``.
        max_epochs / patience: early stopping on validation loss (OmniXAS: 1000 / 50).
        loss: ``mse``, ``rse`` or ``derivative`` (MSE + weighted first/second-derivative MSE),
            with ``loss_params`` for the latter (``d1``, ``d2``).
        zero_stage: DeepSpeed ZeRO stage 0-2.
        precision: ``auto`` (fp32 on CPU, bf16 on GPUs that support it), ``fp32``, ``bf16``,
            ``fp16``. bf16/fp16 are mixed precision: fp32 weights, optimizer state and
            checkpoints, the forward pass under ``torch.autocast`` (see
            ``xas_train.trainer.autocast_section``).
        grad_clip: gradient-norm clipping (0 disables).
        checkpoint_every: DeepSpeed checkpoint every N epochs (0: only at the end).
    """

    model_config = ConfigDict(extra="forbid")

    optimizer: Literal["adam", "adamw"] = "adam"
    lr: float = Field(default=1e-3, gt=0.0, le=10.0)
    weight_decay: float = Field(default=0.0, ge=0.0)
    batch_size: int = Field(default=128, gt=0)
    grad_accum: int = Field(default=1, gt=0)
    max_epochs: int = Field(default=1000, gt=0)
    patience: int = Field(default=50, gt=0)
    min_delta: float = Field(default=0.0, ge=0.0)
    loss: str = "mse"
    loss_params: dict[str, float] = Field(default_factory=dict)
    seed: int = 0
    zero_stage: int = Field(default=0, ge=0, le=2)
    precision: Literal["auto", "fp32", "bf16", "fp16"] = "auto"
    grad_clip: float = Field(default=0.0, ge=0.0)
    checkpoint_every: int = Field(default=25, ge=0)
    keep_checkpoints: int = Field(default=2, gt=0)
    lr_finder: bool = False


class MLflowConfig(BaseModel):
    """Tracking settings. ``tracking_uri: null`` means ``sqlite:///<output_dir>/mlflow.db``."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    tracking_uri: str | None = None
    experiment: str = "xas-train"
    register_model: bool = True
    registered_name: str | None = None
    tags: dict[str, str] = Field(default_factory=dict)


class RunConfig(BaseModel):
    """One training run. ``recipe`` fixes what the data/init settings must look like."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(default="run", pattern=r"^[A-Za-z0-9_.-]+$")
    recipe: Literal["expert", "universal", "tuned", "cross-fidelity"] = "expert"
    init_from: str | None = None
    data: DataConfig = Field(default_factory=DataConfig)
    model: ModelSection = Field(default_factory=ModelSection)
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    mlflow: MLflowConfig = Field(default_factory=MLflowConfig)
    output_dir: str = "runs"

    @model_validator(mode="after")
    def _recipe_rules(self) -> RunConfig:
        elements = self.data.elements
        if self.recipe == "expert" and (elements is None or len(elements) != 1):
            raise ValueError(
                f"recipe 'expert' trains one element; set data.elements to one element "
                f"(got {elements})"
            )
        if self.recipe in ("tuned", "cross-fidelity") and not self.init_from:
            raise ValueError(
                f"recipe {self.recipe!r} fine-tunes a checkpoint; set init_from to a universal "
                "model folder (a run's 'model' folder or a zoo checkpoint)"
            )
        if self.recipe == "tuned" and (elements is None or len(elements) != 1):
            raise ValueError(
                f"recipe 'tuned' fine-tunes on one element; set data.elements (got {elements})"
            )
        if self.recipe in ("expert", "universal") and self.init_from:
            raise ValueError(
                f"recipe {self.recipe!r} trains from scratch; remove init_from or use recipe "
                "'tuned' / 'cross-fidelity'"
            )
        return self

    @property
    def run_dir(self) -> Path:
        """``<output_dir>/<name>``: checkpoints, the final model and predictions."""
        return Path(self.output_dir) / self.name

    def tracking_uri(self) -> str:
        """The MLflow tracking URI (default: a SQLite file in ``output_dir``)."""
        if self.mlflow.tracking_uri:
            return self.mlflow.tracking_uri
        return f"sqlite:///{Path(self.output_dir).resolve() / 'mlflow.db'}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-serialisable resolved config (round-trips through :func:`parse_config`)."""
        out = self.model_dump(mode="json")
        out["model"] = {"architecture": self.model.architecture, **self.model.params()}
        return out

    def fingerprint(self) -> str:
        """Hash of everything that changes the training result (not output or tracking)."""
        d = self.to_dict()
        for key in ("output_dir", "mlflow", "name"):
            d.pop(key, None)
        d["training"].pop("checkpoint_every", None)
        d["training"].pop("keep_checkpoints", None)
        blob = json.dumps(d, sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()[:16]


def _format_errors(exc: ValidationError, source: str) -> ConfigError:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(p) for p in err["loc"]) or "(top level)"
        if err["type"] == "extra_forbidden":
            parts.append(f"unknown key {loc!r}")
        elif err["type"] == "missing":
            parts.append(f"missing key {loc!r}")
        else:
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            got_text = "" if isinstance(got, dict) else f" (got {got!r})"
            parts.append(f"{loc}: {msg}{got_text}")
    return ConfigError(
        f"invalid config {source}: " + "; ".join(parts) + ". See xas_train.config for the "
        "allowed keys and values, or the examples in configs/."
    )


def parse_config(data: dict[str, Any], source: str = "(dict)") -> RunConfig:
    """Validate a config dict; :class:`ConfigError` naming every problem otherwise."""
    if not isinstance(data, dict):
        raise ConfigError(f"config {source} must be a mapping of keys, got {type(data).__name__}")
    try:
        return RunConfig.model_validate(data)
    except ValidationError as exc:
        raise _format_errors(exc, source) from None


def _parse_value(text: str) -> Any:
    return yaml.safe_load(text)


def apply_overrides(data: dict[str, Any], overrides: list[str]) -> dict[str, Any]:
    """Apply ``a.b.c=value`` overrides (YAML-parsed values) to a nested config dict."""
    out = json.loads(json.dumps(data))
    for item in overrides:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"override {item!r} must look like section.key=value")
        node = out
        parts = key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
            if not isinstance(node, dict):
                raise ConfigError(f"override {item!r}: {part!r} is not a section")
        node[parts[-1]] = _parse_value(value)
    return out


def load_config(path: str | Path, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML config file, apply dotted overrides and validate it."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass the path of a YAML config")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    return parse_config(apply_overrides(data, overrides or []), source=repr(str(path)))


def read_yaml_config(path: str | Path, overrides: list[str] | None, kind: str) -> dict[str, Any]:
    """The mapping in the YAML file ``path`` with dotted ``key=value`` overrides applied;
    ConfigError (naming ``kind``, e.g. "inverse-run") for a missing file or invalid YAML."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"config file {str(path)!r} not found; pass a {kind} YAML")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config file {str(path)!r} is not valid YAML: {exc}") from None
    return apply_overrides(data, overrides or [])


def validate_config(model: type[BaseModel], data: dict[str, Any], kind: str, source: str):
    """``model.model_validate(data)``; ConfigError naming every bad key, the ``kind`` of
    config and its ``source`` (a path), and the class that lists the keys."""
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        msgs = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(config)'}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigError(
            f"invalid {kind} config {source!r}: {msgs}. See "
            f"{model.__module__}.{model.__qualname__} for the keys"
        ) from None


def dump_config(config: RunConfig) -> str:
    """The resolved config as YAML text."""
    return yaml.safe_dump(config.to_dict(), sort_keys=False)
