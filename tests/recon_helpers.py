"""Shared set-up of the reconstruction tests: a small store with codes, embeddings, mel and fmri on one 2 s grid."""

from __future__ import annotations

from pathlib import Path

import nibabel.testing
import torch

FUNCTIONAL = Path(nibabel.testing.data_path) / "functional.nii"  # 20 TRs of 2 s
N_TRS = 5


def build_store(root: Path, model_dir: Path, wav: Path) -> dict:
    """Entries on TR 2 s: codes (1.5 kbps), embeddings, mel (16 bands), fmri (first 5 volumes, 1 subject)."""
    import giblet_store as gs
    from giblet_store.fmri.ingest import FmriParams, ingest_fmri

    store = gs.open_store(root)
    grid = gs.TrGrid(2.0)  # 10 s of audio: 5 TRs
    codes = gs.extract_codes(store, wav, gs.CodecParams(str(model_dir), 1.5), grid).entry
    emb = store.derive(codes, gs.Embeddings(), model=str(model_dir))
    mel = gs.extract_mel(store, wav, gs.MelParams(n_mels=16, n_fft=512, hop=256, sample_rate_hz=16000), grid).entry
    fmri = ingest_fmri(store, [FUNCTIONAL], ["sub-01"], params=FmriParams(n_trs=N_TRS)).entry
    ckpt = root.parent / "recon.pt"
    torch.save({"w": torch.arange(3.0)}, ckpt)
    return {"store": store, "codes": codes, "emb": emb, "mel": mel, "fmri": fmri, "ckpt": ckpt}
