"""Train a small deployable Mamba-Spike on synthetic N-MNIST-like events (a thin CLI over
neurodeploy.train), save it, and optionally write a short labelled test recording.

    python examples/train_synthetic.py --out model.safetensors
    python examples/train_synthetic.py --init-from checkpoint_v1.pth --pooling avg --epochs 2 --out ft.safetensors

Defaults: 1200 training samples (seed 0), 500 test samples (seed 1000, held apart), dt 10 ms
(30 bins per 300 ms sample), a model of about 44 k parameters, 5 epochs of AdamW 3e-3 with a
cosine schedule, batch 32, 2 torch threads. neurodeploy/assets/README.md records the command
that made the shipped checkpoint and what it measured.
"""
from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import click

from neurodeploy.train import SMALL_MODEL, TrainConfig, bin_labelled_recording, evaluate, save_trained, train


def write_demo_recording(path: str | Path, seed: int, duration_us: int) -> list[int]:
    """The first 10 samples of the test generator `seed` (one per class: the generator deals the
    labels in shuffled blocks of 10), concatenated into one labelled recording
    (`path` and `path.labels.csv`). Returns their labels in recording order."""
    from neurodeploy.events.synthetic import make_nmnist_like, write_labelled_recording

    samples = make_nmnist_like(10, seed=seed, duration_us=duration_us)
    assert sorted(label for _, label in samples) == list(range(10))
    write_labelled_recording(str(path), samples)
    return [label for _, label in samples]


@click.command(context_settings={"show_default": True})
@click.option("--out", type=click.Path(dir_okay=False), default="mamba_spike_synthetic.safetensors",
              help="Checkpoint to write (the toolkit's safetensors format).")
@click.option("--n-train", type=int, default=TrainConfig.n_train)
@click.option("--n-test", type=int, default=TrainConfig.n_test)
@click.option("--train-seed", type=int, default=TrainConfig.train_seed, help="Generator seed of the training samples.")
@click.option("--test-seed", type=int, default=TrainConfig.test_seed, help="Generator seed of the held-apart test set.")
@click.option("--seed", type=int, default=TrainConfig.seed, help="Torch init and shuffling seed.")
@click.option("--dt-us", type=int, default=TrainConfig.dt_us, help="Bin width (the streaming runtime bins at it).")
@click.option("--duration-us", type=int, default=TrainConfig.duration_us)
@click.option("--epochs", type=int, default=TrainConfig.epochs)
@click.option("--batch-size", type=int, default=TrainConfig.batch_size)
@click.option("--lr", type=float, default=TrainConfig.lr)
@click.option("--weight-decay", type=float, default=TrainConfig.weight_decay)
@click.option("--pooling", type=click.Choice(["sum", "avg"]), default="sum")
@click.option("--conv-channels", type=int, default=SMALL_MODEL["conv_channels"])
@click.option("--spiking-channels", type=int, default=SMALL_MODEL["spiking_channels"])
@click.option("--d-model", type=int, default=SMALL_MODEL["d_model"])
@click.option("--n-layers", type=int, default=SMALL_MODEL["n_layers"])
@click.option("--d-state", type=int, default=SMALL_MODEL["d_state"])
@click.option("--beta", type=float, default=0.9)
@click.option("--threshold", type=float, default=1.0)
@click.option("--init-from", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Fine-tune this checkpoint (a reference v1/v2 .pth too): rebuilt with deployable settings "
                   "(max pooling -> --pooling, causal interface, immediate zero reset), weights copied. "
                   "The size options are then ignored (the checkpoint's sizes are kept), and so are "
                   "--beta/--threshold unless given explicitly.")
@click.option("--threads", type=int, default=2, help="torch intra-op threads.")
@click.option("--recording", type=click.Path(dir_okay=False), default=None,
              help="Also write one test sample per class as a labelled recording (.npz + .npz.labels.csv).")
@click.option("--metrics-json", type=click.Path(dir_okay=False), default=None, help="Write the figures as JSON.")
@click.option("--eval-every-epoch", is_flag=True, help="Report the test accuracy after every epoch (costs time).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@click.pass_context
def main(ctx: click.Context, out, n_train, n_test, train_seed, test_seed, seed, dt_us, duration_us, epochs, batch_size,
         lr, weight_decay, pooling, conv_channels, spiking_channels, d_model, n_layers, d_state, beta, threshold,
         init_from, threads, recording, metrics_json, eval_every_epoch, quiet):
    """Train a deployable Mamba-Spike on synthetic N-MNIST-like events."""
    if init_from:
        model = {"pooling": pooling}
        for name in ("beta", "threshold"):
            if ctx.get_parameter_source(name) != click.core.ParameterSource.DEFAULT:
                model[name] = locals()[name]
    else:
        model = dict(conv_channels=conv_channels, spiking_channels=spiking_channels, d_model=d_model,
                     n_layers=n_layers, d_state=d_state, pooling=pooling, beta=beta, threshold=threshold)
    config = TrainConfig(n_train=n_train, n_test=n_test, train_seed=train_seed, test_seed=test_seed, seed=seed,
                         dt_us=dt_us, duration_us=duration_us, epochs=epochs, batch_size=batch_size, lr=lr,
                         weight_decay=weight_decay, model=model, init_from=init_from, num_threads=threads,
                         eval_every_epoch=eval_every_epoch)
    result = train(config, progress=not quiet)
    command = "python examples/train_synthetic.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    m = result.metrics
    extra = {}
    if recording:
        labels = write_demo_recording(recording, test_seed, duration_us)
        on_recording = evaluate(result.model, bin_labelled_recording(recording, dt_us, m["n_bins"]))
        m["recording"] = Path(recording).name
        m["recording_accuracy"] = on_recording["accuracy"]
        extra = {"recording": m["recording"], "recording_accuracy": f"{on_recording['accuracy']:.4f}"}
        click.echo(f"wrote {recording} and {recording}.labels.csv (labels {labels}); "
                   f"accuracy on it {on_recording['accuracy']:.4f}")
    save_trained(result, out, command=command, extra=extra)
    size_kb = Path(out).stat().st_size / 1024
    click.echo(f"saved {out} ({size_kb:.0f} KiB, {m['parameters']} parameters)")
    click.echo(f"test accuracy {m['test_accuracy']:.4f} on {m['n_test']} samples (seed {test_seed}); "
               f"train accuracy {m['train_accuracy']:.4f} ({m['train_accuracy_kind']}) on {m['n_train']}")
    click.echo(f"wall time {m['wall_time_s']:.1f} s (data {m['data_s']:.1f} s, training {m['train_s']:.1f} s, "
               f"evaluation {m['eval_s']:.1f} s); {m['train_samples_per_s']:.1f} training samples/s on "
               f"{m['threads']} threads; load average {m['load_average_start']:.2f} -> {m['load_average_end']:.2f} "
               f"on {m['cpu_count']} CPUs")
    if metrics_json:
        Path(metrics_json).write_text(json.dumps({"metrics": m, "history": result.history, "config": config.to_dict(),
                                                  "command": command}, indent=2, default=str))


if __name__ == "__main__":
    main()
