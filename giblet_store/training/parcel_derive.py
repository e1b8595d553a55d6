"""Registers :class:`giblet_store.fmri.parcels.Parcellate` with :func:`giblet_store.features.derive.derive`.

The parcel averaging lives in :mod:`giblet_store.fmri.parcels`; the derive machinery in
:mod:`giblet_store.features`; neither package may import the other, so the link is made here, a
layer above both. The derived entry is kind ``fmri`` (a model target like its parent): ``fmri``
(subject, tr, parcel) float32 with the label values as the ``parcel`` coordinate, ``parcel_n_voxels``
(parcel,) (from a surface entry: ``parcel_n_vertices`` and ``parcel_hemi``), and the parent's
(subject, tr) variables (``censored``) and coordinates; every other attribute (runs, TR grid, subjects,
affine or surface, cleaning) is the parent's, ``n_voxels`` (and a surface's ``n_vertices``, ``layout``)
becomes ``n_parcels``.
"""

from __future__ import annotations

from ..errors import ParameterError
from ..features.derive import register_model_transform
from ..features.derive_plan import Plan
from ..fmri.parcels import Parcellate, parcel_plan

__all__ = ["plan_parcellate"]


def plan_parcellate(store, parent, transform: Parcellate, model, device) -> Plan:
    """The derive plan of ``Parcellate`` on an fmri entry (checked before anything is computed)."""
    if model is not None:
        raise ParameterError("model= applies to Embeddings and Quantise, not to Parcellate")
    options, build = parcel_plan(parent, store.open(parent), transform)
    # a surface entry's layout, n_vertices describe vertices; its `surface` (space, meshes) stays
    return Plan("fmri", options, build, dropped=frozenset({"n_voxels", "n_vertices", "layout"}))


register_model_transform(Parcellate, plan_parcellate)
