"""ACSF and SOAP site descriptors (dscribe) reduced by a PCA fitted on the training split.

Pipeline (as in OmniXAS' ACSF/SOAP baselines): for every absorbing site, the raw dscribe
descriptor of the periodic crystal (or, for a pymatgen ``Molecule``, of the molecule alone:
dscribe's non-periodic mode, no images) centred on that site (float64 [raw_dim]) is projected on
the leading principal components of the raw descriptors of the *training* sites::

    features = (raw - mean) @ components.T          # float32 [n, n_components]

The PCA is plain (centred, not standardised) on the raw descriptors, like OmniXAS: terms with
large magnitude (e.g. ACSF G2 with small eta, or SOAP channels of abundant species) dominate
the variance. It keeps the fewest components whose cumulative explained variance ratio reaches
``explained_variance`` (default 0.99), optionally capped at ``max_components``.

``fit(structures, sites)`` must be called on the training rows before ``featurize``; it also
fixes the chemical species of the descriptor (by default the elements of the training
structures, sorted by atomic number). ``state()`` returns everything needed to rebuild the
fitted featurizer (species, raw_dim, PCA mean/components/explained variance ratio as lists);
``from_state(config, state)`` rebuilds it.

Raw dimensions for S species (dscribe 2.1):

* ACSF: ``S * (1 + n_G2) + S (S + 1) / 2 * n_G4`` (defaults n_G2 = 8, n_G4 = 4: 30 for S = 2,
  76 for S = 4, 175 for S = 7, 7860 for S = 60).
* SOAP, ``compression="mu1nu1"`` (default): ``S * n_max**2 * (l_max + 1)`` (896 for S = 2 with
  n_max = 8, l_max = 6; 3136 for S = 7; 26880 for S = 60). ``"off"`` (full power spectrum)
  grows as S**2: ``(S n_max (n_max + 1) / 2 + S (S - 1) / 2 * n_max**2) * (l_max + 1)`` (952 for S = 2, but
  ~800k for S = 60), hence the compressed default.

dscribe and ASE are imported only inside methods; building a featurizer without dscribe raises
the ``MissingExtraError`` naming the ``soap`` extra.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from importlib import metadata
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np

from xas_features.errors import FeaturizerError, missing_extra
from xas_features.featurizers.base import check_sites, group_by_structure

if TYPE_CHECKING:
    from pymatgen.core import Structure

# ACSF defaults: radial G2 terms (eta [1/A^2], R_s [A]): three wide Gaussians centred on the
# absorber plus five narrow shells across typical first/second-shell cation-anion distances.
DEFAULT_G2: tuple[tuple[float, float], ...] = (
    (0.003, 0.0),
    (0.03, 0.0),
    (0.3, 0.0),
    (2.0, 1.6),
    (2.0, 2.0),
    (2.0, 2.4),
    (2.0, 2.8),
    (2.0, 3.2),
)
# Angular G4 terms (eta [1/A^2], zeta, lambda).
DEFAULT_G4: tuple[tuple[float, float, float], ...] = (
    (0.005, 1.0, 1.0),
    (0.005, 1.0, -1.0),
    (0.005, 4.0, 1.0),
    (0.005, 4.0, -1.0),
)


def _dscribe_version() -> str:
    try:
        return metadata.version("dscribe")
    except metadata.PackageNotFoundError as err:
        raise missing_extra("dscribe", "soap") from err


def _element_symbols(structure: Structure) -> set[str]:
    return {el.symbol for el in structure.composition.element_composition.elements}


def _sorted_species(symbols: set[str] | Sequence[str]) -> list[str]:
    from pymatgen.core import Element

    try:
        return sorted(set(symbols), key=lambda s: Element(s).Z)
    except ValueError as err:
        raise FeaturizerError(f"unknown element in species {sorted(symbols)}: {err}") from err


class _DScribePCAFeaturizer(ABC):
    """Shared machinery: raw dscribe descriptors + PCA fitted on training sites.

    Subclasses define ``name``, ``_settings()`` (descriptor settings that enter ``config``)
    and ``_make_descriptor(species)``.
    """

    name: ClassVar[str] = ""
    _PCA_KEYS: ClassVar[tuple[str, ...]] = ("species", "explained_variance", "max_components")

    def __init__(
        self,
        species: Sequence[str] | None = None,
        explained_variance: float = 0.99,
        max_components: int | None = None,
    ) -> None:
        self._dscribe = _dscribe_version()
        if not 0.0 < float(explained_variance) <= 1.0:
            raise FeaturizerError(
                f"explained_variance must be in (0, 1], got {explained_variance}; e.g. 0.99"
            )
        if max_components is not None and int(max_components) < 1:
            raise FeaturizerError(f"max_components must be >= 1 or None, got {max_components}")
        self.species: list[str] | None = _sorted_species(species) if species else None
        self.explained_variance = float(explained_variance)
        self.max_components = None if max_components is None else int(max_components)
        self._fit_species: list[str] | None = None
        self._descriptor: Any = None
        self._descriptor_species: list[str] | None = None
        self._descriptor_periodic = True
        self._mean: np.ndarray | None = None  # float64 [raw_dim]
        self._components: np.ndarray | None = None  # float64 [k, raw_dim]
        self._ratio: np.ndarray | None = None  # float64 [k]
        self._n_fit_sites = 0

    # -- protocol --------------------------------------------------------------------------
    @property
    def version(self) -> str:
        """``dscribe<version>-pca``: the descriptor backend version plus the PCA step."""
        return f"dscribe{self._dscribe}-pca"

    @property
    def fitted(self) -> bool:
        """Whether ``fit`` (or ``load_state``) has run."""
        return self._components is not None

    @property
    def dim(self) -> int:
        """Number of kept PCA components (known after ``fit``)."""
        self._require_fit()
        assert self._components is not None
        return int(self._components.shape[0])

    @property
    def raw_dim(self) -> int:
        """Dimension of the raw dscribe descriptor for the fitted (or given) species."""
        return int(self._get_descriptor(self._descriptor_periodic).get_number_of_features())

    @property
    def fitted_species(self) -> list[str]:
        """Species of the descriptor: ``species`` if given, else those seen by ``fit``."""
        species = self.species or self._fit_species
        if species is None:
            raise FeaturizerError(
                f"{self.name}: species are not known yet; call fit(structures, sites) on the "
                "training split first (or pass species=[...])"
            )
        return list(species)

    def config(self) -> dict[str, Any]:
        """Settings that change the output (hashed into the storage key).

        ``species`` is None when inferred from the training structures (the inferred list is
        in ``state()``). The raw descriptor dimension is ``raw_dim`` (also in ``state()``);
        see the module docstring for its formula.
        """
        return {
            **self._settings(),
            "species": self.species,
            "explained_variance": self.explained_variance,
            "max_components": self.max_components,
        }

    # -- fitting ---------------------------------------------------------------------------
    def fit(self, structures: Sequence[Structure], sites: Sequence[int]) -> _DScribePCAFeaturizer:
        """Fit species (if not given) and the PCA on the training sites; returns ``self``."""
        check_sites(structures, sites)
        if len(sites) < 2:
            raise FeaturizerError(
                f"{self.name}: PCA needs at least 2 training sites, got {len(sites)}; "
                "fit on the whole training split"
            )
        seen: set[str] = set()
        for structure in {id(s): s for s in structures}.values():
            seen |= _element_symbols(structure)
        if self.species is None:
            self._fit_species = _sorted_species(seen)
        else:
            missing = sorted(seen - set(self.species))
            if missing:
                raise FeaturizerError(
                    f"{self.name}: training structures contain {missing}, which are not in "
                    f"species={self.species}; add them to species (or pass species=None)"
                )
            self._fit_species = list(self.species)
        self._descriptor = None
        raw = self.raw_descriptors(structures, sites)
        mean = raw.mean(axis=0)
        centred = raw - mean
        _, singular, vt = np.linalg.svd(centred, full_matrices=False)
        variance = singular**2
        total = float(variance.sum())
        if not total > 0.0:
            raise FeaturizerError(
                f"{self.name}: the {len(sites)} training descriptors are all identical, so PCA "
                "is undefined; fit on more (and more varied) training sites"
            )
        ratio = variance / total
        k = int(np.searchsorted(np.cumsum(ratio), self.explained_variance - 1e-12) + 1)
        k = min(k, ratio.size)
        if self.max_components is not None:
            k = min(k, self.max_components)
        components = vt[:k].copy()
        # deterministic signs: the largest-magnitude loading of each component is positive
        pivot = np.argmax(np.abs(components), axis=1)
        signs = np.sign(components[np.arange(k), pivot])
        signs[signs == 0] = 1.0
        self._components = components * signs[:, None]
        self._mean = mean
        self._ratio = ratio[:k].copy()
        self._n_fit_sites = len(sites)
        return self

    def state(self) -> dict[str, Any]:
        """JSON-serialisable fitted state (species, raw_dim, PCA as float64 lists)."""
        self._require_fit()
        assert self._mean is not None and self._components is not None
        assert self._ratio is not None
        return {
            "species": self.fitted_species,
            "raw_dim": int(self._mean.size),
            "n_components": int(self._components.shape[0]),
            "n_fit_sites": int(self._n_fit_sites),
            "mean": self._mean.tolist(),
            "components": self._components.tolist(),
            "explained_variance_ratio": self._ratio.tolist(),
        }

    def load_state(self, state: dict[str, Any]) -> _DScribePCAFeaturizer:
        """Restore a state from ``state()``; checks it matches this config. Returns ``self``."""
        try:
            species = _sorted_species(state["species"])
            mean = np.asarray(state["mean"], dtype=np.float64)
            components = np.asarray(state["components"], dtype=np.float64)
            ratio = np.asarray(state["explained_variance_ratio"], dtype=np.float64)
            n_components = int(state["n_components"])
            raw_dim = int(state["raw_dim"])
        except (KeyError, TypeError, ValueError) as err:
            raise FeaturizerError(f"{self.name}: invalid fitted state ({err!r})") from err
        if self.species is not None and species != self.species:
            raise FeaturizerError(
                f"{self.name}: state species {species} differ from configured {self.species}"
            )
        if components.ndim != 2 or components.shape != (n_components, raw_dim):
            raise FeaturizerError(
                f"{self.name}: state components have shape {components.shape}, "
                f"expected {(n_components, raw_dim)}"
            )
        self._fit_species = species
        self._descriptor = None
        if self.raw_dim != raw_dim or mean.shape != (raw_dim,):
            raise FeaturizerError(
                f"{self.name}: state raw_dim {raw_dim} does not match this configuration "
                f"({self.raw_dim}); rebuild with the config saved alongside the state"
            )
        self._mean, self._components, self._ratio = mean, components, ratio
        self._n_fit_sites = int(state.get("n_fit_sites", 0))
        return self

    @classmethod
    def from_state(cls, config: dict[str, Any], state: dict[str, Any]) -> _DScribePCAFeaturizer:
        """Rebuild a fitted featurizer from its saved ``config()`` and ``state()``."""
        keys = set(cls._setting_names()) | set(cls._PCA_KEYS)
        kwargs = {k: v for k, v in config.items() if k in keys}
        return cls(**kwargs).load_state(state)

    # -- featurizing -----------------------------------------------------------------------
    def raw_descriptors(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """Raw dscribe descriptors, float64 [n, raw_dim], one per (structure, absorbing site)."""
        check_sites(structures, sites)
        from pymatgen.io.ase import AseAtomsAdaptor

        from xas_data.structures import is_molecule

        species = set(self.fitted_species)
        out = np.empty((len(sites), self.raw_dim), dtype=np.float64)
        for positions in group_by_structure(structures).values():
            structure = structures[positions[0]]
            unseen = sorted(_element_symbols(structure) - species)
            if unseen:
                raise FeaturizerError(
                    f"{self.name}: {structure.composition.reduced_formula} (item {positions[0]}) "
                    f"contains {unseen}, not among the fitted species {self.fitted_species}; refit "
                    f"including structures with {unseen} (or pass species=[...] containing them)"
                )
            if not structure.is_ordered:
                raise FeaturizerError(
                    f"{self.name}: {structure.composition.reduced_formula} (item {positions[0]}) "
                    "is disordered (partial occupancies); order it first"
                )
            centers, inverse = np.unique([int(sites[i]) for i in positions], return_inverse=True)
            # molecules: no cell, no periodic images (dscribe's non-periodic mode)
            periodic = not is_molecule(structure)
            atoms = AseAtomsAdaptor.get_atoms(structure)
            descriptor = self._get_descriptor(periodic)
            values = np.asarray(descriptor.create(atoms, centers=centers.tolist()), np.float64)
            values = values.reshape(len(centers), -1)
            out[positions] = values[inverse.reshape(-1)]
        return out

    def featurize(self, structures: Sequence[Structure], sites: Sequence[int]) -> np.ndarray:
        """PCA-reduced descriptors, float32 [n, dim]."""
        self._require_fit()
        assert self._mean is not None and self._components is not None
        raw = self.raw_descriptors(structures, sites)
        return ((raw - self._mean) @ self._components.T).astype(np.float32)

    # -- helpers ---------------------------------------------------------------------------
    def _require_fit(self) -> None:
        if self._components is None:
            raise FeaturizerError(
                f"{self.name} is not fitted: call fit(structures, sites) on the training split "
                "first (featurize_dataset does this), or rebuild it with from_state(config, state)"
            )

    def _get_descriptor(self, periodic: bool = True) -> Any:
        """The dscribe descriptor for the fitted species; ``periodic=False`` for molecules."""
        species = self.fitted_species
        if (
            self._descriptor is None
            or self._descriptor_species != species
            or self._descriptor_periodic != periodic
        ):
            try:
                import dscribe.descriptors  # noqa: F401
            except ImportError as err:
                raise missing_extra("dscribe", "soap") from err
            self._descriptor = self._make_descriptor(species, periodic)
            self._descriptor_species = species
            self._descriptor_periodic = periodic
        return self._descriptor

    @abstractmethod
    def _settings(self) -> dict[str, Any]:
        """Descriptor settings of the subclass (part of ``config``)."""

    @classmethod
    @abstractmethod
    def _setting_names(cls) -> tuple[str, ...]:
        """Names of the subclass's descriptor settings."""

    @abstractmethod
    def _make_descriptor(self, species: list[str], periodic: bool = True) -> Any:
        """The dscribe descriptor object for ``species`` (``periodic=False``: molecules)."""

    def __repr__(self) -> str:
        fitted = f"dim={self.dim}" if self.fitted else "unfitted"
        return f"{type(self).__name__}({self._settings()}, species={self.species}, {fitted})"


class ACSFFeaturizer(_DScribePCAFeaturizer):
    """Atom-centred symmetry functions of the absorbing site (dscribe ACSF) + PCA.

    Args:
        r_cut: cutoff radius in Angstrom (default 6.0).
        g2_params: radial terms ``(eta [1/A^2], R_s [A])`` (default ``DEFAULT_G2``, 8 terms).
        g4_params: angular terms ``(eta [1/A^2], zeta, lambda)`` (default ``DEFAULT_G4``, 4).
        species: element symbols of the descriptor; None: those of the training structures.
        explained_variance: PCA keeps this cumulative explained variance ratio (0.99).
        max_components: optional cap on the number of PCA components.
    """

    name: ClassVar[str] = "acsf"

    def __init__(
        self,
        r_cut: float = 6.0,
        g2_params: Sequence[Sequence[float]] | None = None,
        g4_params: Sequence[Sequence[float]] | None = None,
        species: Sequence[str] | None = None,
        explained_variance: float = 0.99,
        max_components: int | None = None,
    ) -> None:
        super().__init__(species, explained_variance, max_components)
        if not float(r_cut) > 0:
            raise FeaturizerError(f"r_cut must be positive (Angstrom), got {r_cut}")
        self.r_cut = float(r_cut)
        g2 = DEFAULT_G2 if g2_params is None else g2_params
        g4 = DEFAULT_G4 if g4_params is None else g4_params
        self.g2_params = [[float(v) for v in row] for row in g2]
        self.g4_params = [[float(v) for v in row] for row in g4]
        if any(len(row) != 2 for row in self.g2_params):
            raise FeaturizerError("g2_params rows must be (eta, R_s)")
        if any(len(row) != 3 for row in self.g4_params):
            raise FeaturizerError("g4_params rows must be (eta, zeta, lambda)")

    def _settings(self) -> dict[str, Any]:
        return {"r_cut": self.r_cut, "g2_params": self.g2_params, "g4_params": self.g4_params}

    @classmethod
    def _setting_names(cls) -> tuple[str, ...]:
        return ("r_cut", "g2_params", "g4_params")

    def _make_descriptor(self, species: list[str], periodic: bool = True) -> Any:
        from dscribe.descriptors import ACSF

        return ACSF(
            r_cut=self.r_cut,
            g2_params=self.g2_params or None,
            g4_params=self.g4_params or None,
            species=species,
            periodic=periodic,
            sparse=False,
            dtype="float64",
        )


class SOAPFeaturizer(_DScribePCAFeaturizer):
    """Smooth overlap of atomic positions of the absorbing site (dscribe SOAP) + PCA.

    Args:
        r_cut: cutoff radius in Angstrom (default 6.0).
        n_max: number of radial basis functions (8).
        l_max: maximum spherical harmonics degree (6).
        sigma: Gaussian width of the atomic densities in Angstrom (0.5).
        rbf: radial basis, ``"gto"`` or ``"polynomial"``.
        compression: dscribe compression mode: ``"mu1nu1"`` (default; linear in the number of
            species), ``"off"`` (full power spectrum, quadratic), ``"crossover"``, ``"mu2"``.
        species: element symbols of the descriptor; None: those of the training structures.
        explained_variance: PCA keeps this cumulative explained variance ratio (0.99).
        max_components: optional cap on the number of PCA components.
    """

    name: ClassVar[str] = "soap"

    def __init__(
        self,
        r_cut: float = 6.0,
        n_max: int = 8,
        l_max: int = 6,
        sigma: float = 0.5,
        rbf: str = "gto",
        compression: str = "mu1nu1",
        species: Sequence[str] | None = None,
        explained_variance: float = 0.99,
        max_components: int | None = None,
    ) -> None:
        super().__init__(species, explained_variance, max_components)
        if compression not in ("off", "mu1nu1", "mu2", "crossover"):
            raise FeaturizerError(
                f"unknown SOAP compression {compression!r}; use off, mu1nu1, mu2 or crossover"
            )
        if rbf not in ("gto", "polynomial"):
            raise FeaturizerError(f"unknown SOAP rbf {rbf!r}; use gto or polynomial")
        if not (float(r_cut) > 0 and float(sigma) > 0 and int(n_max) >= 1 and int(l_max) >= 0):
            raise FeaturizerError(
                f"invalid SOAP settings r_cut={r_cut}, sigma={sigma}, n_max={n_max}, "
                f"l_max={l_max}: need r_cut, sigma > 0, n_max >= 1, l_max >= 0"
            )
        self.r_cut = float(r_cut)
        self.n_max = int(n_max)
        self.l_max = int(l_max)
        self.sigma = float(sigma)
        self.rbf = rbf
        self.compression = compression

    def _settings(self) -> dict[str, Any]:
        return {
            "r_cut": self.r_cut,
            "n_max": self.n_max,
            "l_max": self.l_max,
            "sigma": self.sigma,
            "rbf": self.rbf,
            "compression": self.compression,
        }

    @classmethod
    def _setting_names(cls) -> tuple[str, ...]:
        return ("r_cut", "n_max", "l_max", "sigma", "rbf", "compression")

    def _make_descriptor(self, species: list[str], periodic: bool = True) -> Any:
        from dscribe.descriptors import SOAP

        return SOAP(
            r_cut=self.r_cut,
            n_max=self.n_max,
            l_max=self.l_max,
            sigma=self.sigma,
            rbf=self.rbf,
            compression={"mode": self.compression},
            species=species,
            periodic=periodic,
            sparse=False,
            dtype="float64",
        )


__all__ = ["DEFAULT_G2", "DEFAULT_G4", "ACSFFeaturizer", "SOAPFeaturizer"]
