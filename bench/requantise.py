"""How often re-quantising dequantised codes returns the same codes, and what that does to the audio.

    python bench/requantise.py [--seconds 20] [--model DIR]

EnCodec's RVQ is greedy: quantise(dequantise(codes)) need not equal codes. For each bandwidth this
prints the share of equal codes, of frames whose every code is equal, and the SNR (dB) of the audio
decoded from the re-quantised codes against the audio decoded from the original codes. Also checks
that quantising the encoder output gives the model's own codes bit for bit. Without --model a
random-weight test model is used (the figures then describe that model only).
"""

from __future__ import annotations

import argparse

import numpy as np


def main(argv=None) -> int:
    import torch

    import giblet_store as gs
    from giblet_store.codec.encodec import Codec
    from giblet_store.testing import make_test_model, synth_audio

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--model", default=None, help="save_pretrained directory or hub name (default: test model)")
    args = p.parse_args(argv)
    if args.model:
        from giblet_store.codec.encodec import load_codec

        codec = load_codec(args.model)
    else:
        codec = Codec(make_test_model(seed=0), "random-weight test model", {}, "cpu")
    x = synth_audio(args.seconds, codec.sample_rate_hz, seed=5)[: codec.channels]
    with torch.inference_mode():
        emb = codec.model.encoder(torch.from_numpy(x)[None])
    print(f"model: {codec.name}; {args.seconds:g} s of synthetic audio")
    print("kbps  codebooks  encoder-output bit-for-bit  codes equal  frames equal  SNR requantised audio (dB)")
    for bw in codec.bandwidths:
        ref = codec.model.quantizer.encode(emb, bw)[:, 0].numpy()
        same = np.array_equal(gs.quantise(emb[0].T.numpy(), model=codec, bandwidth_kbps=bw), ref)
        again = gs.quantise(gs.dequantise(ref, model=codec), model=codec, bandwidth_kbps=bw)
        a, b = gs.decode_codes(ref, model=codec)[0], gs.decode_codes(again, model=codec)[0]
        snr = 10 * np.log10(np.sum(a**2) / max(np.sum((a - b) ** 2), 1e-30))
        print(f"{bw:>4g}  {ref.shape[0]:>9}  {str(same):>26}  {np.mean(again == ref):>11.1%}  "
              f"{np.mean((again == ref).all(0)):>12.1%}  {snr:>26.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
