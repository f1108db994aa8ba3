"""Write ``alignn_golden.pt``: ALIGNN-DOS outputs of fixed weights on fixed crystals.

Run once, with the implementation the fixture pins (see ``origin`` inside the file), from the
repository root::

    PYTHONPATH=src:tests python tests/data/make_alignn_golden.py <commit>

The test ``tests/test_alignn_model.py::test_matches_golden_outputs`` rebuilds the same inputs
from the stored structures and demands the same outputs: a rewrite of the graph engine must
reproduce the network it replaces, weight for weight.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch
from ase import Atoms
from ase.build import bulk

from esrepro.papers.alignn_dos.data import collate_records, graph_record
from esrepro.papers.alignn_dos.model import ALIGNN
from esrepro.structures import read_structure
from graph_helpers import seeded_state_dict

HERE = Path(__file__).resolve().parent
MIRROR = HERE.parents[1].parent / "shared" / "mirror"
SAMPLES = (
    "raw.githubusercontent.com/usnistgov/alignn/a8be0bed552ac70c14b8db825a48dbca1d14ad8d/"
    "alignn/examples/sample_data_multi_prop"
)

#: Small real-init model (its state_dict is stored) and the two production widths (weights
#: from :func:`graph_helpers.seeded_state_dict`, so only their outputs are stored).
CONFIGS = {
    "small": {"hidden_features": 16, "embedding_features": 8, "alignn_layers": 2, "gcn_layers": 2,
              "fc_layers": 2, "output_features": 10, "pooling": "mean+max"},
    "params": {"hidden_features": 64, "embedding_features": 32, "output_features": 300},
    "reference": {"hidden_features": 256, "embedding_features": 64, "output_features": 300},
}


def structures() -> dict[str, Atoms]:
    triclinic = Atoms("NaCl", scaled_positions=[[0.1, 0.2, 0.3], [0.6, 0.45, 0.8]],
                      cell=[[4.0, 0.0, 0.0], [3.7, 1.1, 0.0], [3.3, 0.8, 1.4]], pbc=True)
    out = {
        "Cu-fcc": bulk("Cu", "fcc", a=3.61),  # self-image bonds only
        "Si-diamond": bulk("Si", "diamond", a=5.43),
        "NaCl-triclinic": triclinic,
    }
    for jid in ("JVASP-1372", "JVASP-50332"):  # AlAs, CuNa2O2 (skewed, self-image bonds)
        out[jid] = read_structure(MIRROR / SAMPLES / f"POSCAR-{jid}.vasp")
    return out


def main(commit: str) -> None:
    structs = structures()
    records = [graph_record(a) for a in structs.values()]
    batch = collate_records(records)
    golden: dict = {
        "origin": f"esrepro commit {commit}: tests/data/make_alignn_golden.py (pre-PyG, "
                  "hand-written index_add_ batching/scatter)",
        "structures": {name: {"numbers": torch.from_numpy(a.numbers.astype(np.int64)),
                              "positions": torch.from_numpy(a.positions.copy()),
                              "cell": torch.from_numpy(a.cell.array.copy())}
                       for name, a in structs.items()},
        "n_edges": torch.tensor([r["graph"]["edge_index"].shape[1] for r in records]),
        "n_triplets": torch.tensor([r["lg_edge_index"].shape[1] for r in records]),
        "configs": {},
    }
    for name, cfg in CONFIGS.items():
        torch.manual_seed(0)
        model = ALIGNN(atom_input_features=5, **cfg)
        if name == "small":
            # Real initialisation, but non-trivial BatchNorm statistics, so eval mode does not
            # hide a wrong normalisation axis.
            gen = torch.Generator().manual_seed(2)
            with torch.no_grad():
                for key, value in model.state_dict().items():
                    if key.endswith("running_mean"):
                        value.uniform_(-0.5, 0.5, generator=gen)
                    elif key.endswith("running_var"):
                        value.uniform_(0.5, 2.0, generator=gen)
        else:
            model.load_state_dict(seeded_state_dict(model, seed=1))
        model = model.double()
        state = {k: v.clone() for k, v in model.state_dict().items()}
        entry = {
            "config": cfg,
            "param_shapes": {k: tuple(p.shape) for k, p in model.named_parameters()},
            "n_params": sum(p.numel() for p in model.parameters()),
            "n_params_by_module": {n: sum(p.numel() for p in m.parameters())
                                   for n, m in model.named_children()},
        }
        with torch.no_grad():
            entry["eval"] = model.eval()(batch)
            if name == "small":
                entry["state_dict"] = {k: v.float() if v.is_floating_point() else v
                                       for k, v in state.items()}
                other = ALIGNN(atom_input_features=5, **cfg, order="triplet-pair").double()
                other.load_state_dict(state)
                entry["eval_triplet_pair"] = other.eval()(batch)
            entry["train"] = model.train()(batch)  # batch statistics (updates running stats last)
        golden["configs"][name] = entry
    torch.save(golden, HERE / "alignn_golden.pt")


if __name__ == "__main__":
    main(sys.argv[1])
