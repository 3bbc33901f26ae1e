"""Write a small seeded SpikeMamba LM as upstream's users have it: `torch.save(state_dict)` + a config.

    python examples/spikemamba_checkpoint.py --out sm/ [--integration pre_post] [--gate soft]
    neurodeploy info sm/spikemamba.pt --config sm/spikemamba.json

Its LIF gates are drawn so that every gate fires (neurodeploy.model.spikemamba_lm.synthetic);
the weights are random, so the "language" it models is noise: it exercises the toolkit, it is
not a trained model.
"""
from __future__ import annotations

import argparse

from neurodeploy.model.spikemamba_lm.config import SpikeMambaLMConfig
from neurodeploy.model.spikemamba_lm.synthetic import firing_model, write_upstream_checkpoint


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="spikemamba_example")
    parser.add_argument("--vocab", type=int, default=256)
    parser.add_argument("--d-model", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--integration", default="pre_post", choices=["pre", "post", "pre_post", "residual"])
    parser.add_argument("--gate", default="soft", choices=["soft", "hard"])
    parser.add_argument("--pooling", default="none", choices=["none", "learnable", "adaptive"])
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    config = SpikeMambaLMConfig(vocab_size=args.vocab, d_model=args.d_model, n_layer=args.layers,
                                spike_integration=args.integration, spike_gate_mode=args.gate,
                                temporal_pooling=args.pooling)
    weights, config_path = write_upstream_checkpoint(firing_model(config, args.seed), args.out)
    print(f"written {weights} and {config_path}")


if __name__ == "__main__":
    main()
