"""Stage configs are parsed once from params.yaml into frozen, typed objects: one source of
values (params.yaml), unknown and missing keys named, choices checked."""

from __future__ import annotations

import dataclasses
import inspect
import typing

import pytest
from ase.build import bulk

from esrepro.config import Pooling
from esrepro.dft.settings import DFTSettings, cache_key
from esrepro.errors import ConfigError
from esrepro.registry import all_papers, get_paper, paper_names
from esrepro.stage_cli import check_shared_groups
from params_helpers import repo_params, stage_config

#: Versions fixed, so the key depends on the structure and the settings alone.
VERSIONS = {"product_format": "2", "gpaw": "26.7.0", "gpaw-data": "1.0.1", "ase": "3.25.0"}


def test_every_paper_parses_the_repository_params() -> None:
    params = repo_params()
    check_shared_groups(params, paper_names())
    for paper in all_papers():
        configs = paper.parse(params)
        assert set(configs) == {s.name for s in paper.stages if s.config is not None}


def test_values_are_params_yaml_values() -> None:
    """The defaults that used to disagree with params.yaml deep in the code (issue 16)."""
    train = stage_config("dosnp", "train")
    assert train.train.loss == "l1" and train.train.batch_size == 32
    assert train.train.weight_decay == pytest.approx(1e-4) and train.pooling == "mean+max"
    assert stage_config("dosnp", "evaluate").batch_size == 32
    assert stage_config("alignn_dos", "train").pooling == "mean"


def test_model_classes_have_no_defaults_to_disagree_with() -> None:
    from esrepro.papers.dosnp.model import DOSnp, DOSnpLightning

    for cls in (DOSnpLightning, DOSnp):
        defaults = {n: p.default for n, p in inspect.signature(cls).parameters.items()
                    if p.default is not inspect.Parameter.empty}
        assert defaults == ({} if cls is DOSnpLightning else {"n_outputs": 1})


def test_an_unknown_key_is_an_error_naming_it() -> None:
    with pytest.raises(
        ConfigError,
        match=r"^params.yaml dosnp.train.lsos: unknown key \(no dosnp stage reads it\)$",
    ):
        get_paper("dosnp").parse(repo_params(dosnp__train__lsos="l1"))
    with pytest.raises(ConfigError, match=r"^params.yaml ldos.soap.rcut: unknown key"):
        get_paper("ldos").parse(repo_params(ldos__soap__rcut=5.0))


def test_a_missing_key_is_an_error_naming_it() -> None:
    params = repo_params()
    del params["dosnp"]["train"]["loss"]
    with pytest.raises(ConfigError, match=r"^params.yaml dosnp.train.loss: missing"):
        get_paper("dosnp").parse(params)


@pytest.mark.parametrize(
    ("paper", "change", "message"),
    [
        (
            "dosnp", {"dosnp__train__loss": "l2"},
            r"dosnp.train.loss: expected one of \['mse', 'l1'\], got 'l2'",
        ),
        ("dosnp", {"dosnp__train__lr": "fast"}, r"dosnp.train.lr: expected a number, got 'fast'"),
        ("dosnp", {"dosnp__train__lr": 0}, r"dosnp.train.lr: must be > 0, got 0"),
        ("dosnp", {"dosnp__structure_source": "icsd"}, r"dosnp.structure_source: expected one of"),
        ("dosnp", {"model__pooling": "median"}, r"model.pooling: expected one of"),
        (
            "dosnp", {"model__pooling": {"alignn_dos": "mean"}},
            r"model.pooling: no entry for 'dosnp'",
        ),
        (
            "alignn_dos", {"alignn_dos__model__order": "pair"},
            r"alignn_dos.model.order: expected one of",
        ),
        (
            "alignn_dos", {"alignn_dos__autoencoder__latents": [8, "x"]},
            r"alignn_dos.autoencoder.latents\[1\]: expected an integer",
        ),
        (
            "ldos", {"ldos__generated__graphene": 1},
            r"ldos.generated.graphene: unknown generated set",
        ),
        ("ldos", {"ldos__mirrored_si__bulk_sh": -1}, r"ldos.mirrored_si.bulk_sh: must be >= 0"),
    ],
)
def test_bad_values_name_the_key(paper: str, change: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=rf"^params.yaml {message}"):
        get_paper(paper).parse(repo_params(**change))


def test_one_pooling_mode_for_every_paper() -> None:
    """`dvc exp run -S model.pooling=max` writes one mode for all papers."""
    params = repo_params(model__pooling="max")
    assert get_paper("dosnp").parse(params)["train"].pooling == "max"
    assert get_paper("alignn_dos").parse(params)["train"].pooling == "max"


def test_configs_are_frozen() -> None:
    cfg = stage_config("ldos", "structures")
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.seed = 1  # type: ignore[misc]
    with pytest.raises(TypeError):
        cfg.generated["carbon"] = 0  # type: ignore[index]
    assert isinstance(stage_config("ldos", "learn").learn.lam, tuple)


def test_shared_groups_are_checked() -> None:
    papers = paper_names()
    with pytest.raises(ConfigError, match=r"^params.yaml bandformerr: unknown group"):
        check_shared_groups(repo_params(bandformerr={"n": 1}), papers)
    with pytest.raises(ConfigError, match=r"^params.yaml fetch.mirorr: unknown key"):
        check_shared_groups(repo_params(fetch__mirorr="x"), papers)
    with pytest.raises(ConfigError, match=r"^params.yaml model.pooling.dosnpp: no such paper"):
        check_shared_groups(repo_params(model__pooling={"dosnpp": "mean"}), papers)
    with pytest.raises(ConfigError, match=r"ecut\b.*params.yaml dft.settings"):
        check_shared_groups(repo_params(dft__settings__ecut=400), papers)
    with pytest.raises(ConfigError, match=r"^params.yaml dft.farm.workers: must be >= 1"):
        check_shared_groups(repo_params(dft__farm__workers=0), papers)


def test_choices_spelled_in_configs_match_the_code() -> None:
    from esrepro.papers.alignn_dos import config as alignn
    from esrepro.papers.alignn_dos.model import LINKS, ORDERS
    from esrepro.pooling import POOLING_MODES
    from esrepro.spectra import REFERENCES

    assert typing.get_args(Pooling) == POOLING_MODES
    assert typing.get_args(alignn.Reference) == REFERENCES
    assert typing.get_args(alignn.Order) == ORDERS and typing.get_args(alignn.Link) == LINKS


@pytest.mark.parametrize(
    ("paper", "key"),
    [
        # Computed with the hand-read params before the typed configs existed: the DFT settings
        # each stage hands the engine keep their cache keys (cached products stay valid).
        ("dosnp", "2de56e39add4f0a41346634ff5f492cbdfde5e44dfaebaee8cbe47433ad50a67"),
        ("alignn_dos", "2de56e39add4f0a41346634ff5f492cbdfde5e44dfaebaee8cbe47433ad50a67"),
        ("ldos", "41fb83254336f5db036dd18ddfbc37f471572b1c286e76233a688a2e8939fe26"),
    ],
)
def test_dft_cache_keys_of_the_default_settings_are_unchanged(paper: str, key: str) -> None:
    config = get_paper(paper).parse(repo_params())["dft"]
    settings = DFTSettings.from_params(config.as_params()["settings"])
    assert cache_key(bulk("Si", "diamond", a=5.431), settings, VERSIONS) == key
