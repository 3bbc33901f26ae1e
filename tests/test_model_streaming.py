"""Streaming `step` equals the offline forward, for every variant of the model family."""
import itertools

import pytest
import torch

from neurodeploy.model import MambaSpike, MambaSpikeConfig


def make_model(seed: int, **fields) -> MambaSpike:
    torch.manual_seed(seed)
    base = dict(input_height=18, input_width=18, conv_channels=8, spiking_channels=8, d_model=16, n_layers=2, num_classes=5)
    base.update(fields)
    model = MambaSpike(MambaSpikeConfig(**base)).eval()
    with torch.no_grad():  # default init barely spikes; scale convs so every layer fires
        for conv in (model.spiking_frontend.conv1, model.spiking_frontend.conv2, model.spiking_frontend.conv3):
            conv.weight.mul_(2.5)
    return model


def event_counts(batch: int, steps: int, h: int = 18, w: int = 18, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.poisson(torch.full((batch, steps, 2, h, w), 0.3), generator=gen)


def run_streaming(model: MambaSpike, frames: torch.Tensor):
    state = model.initial_state(frames.shape[0])
    per_layer = [[], [], []]
    anytime = []
    for t in range(frames.shape[1]):
        logits_t, state, spikes = model.step_with_spikes(frames[:, t], state)
        anytime.append(logits_t)
        for i, s in enumerate(spikes):
            per_layer[i].append(s)
    logits, state = model.flush(state)
    return logits, [torch.stack(s, dim=1) for s in per_layer], anytime, state


VARIANTS = [
    dict(pooling=pooling, recurrent=recurrent, interface=interface, reset=reset, reset_timing=timing)
    for pooling, recurrent, interface, (reset, timing) in itertools.product(
        ("max", "avg", "sum"), (False, True), ("centered", "causal"),
        (("subtract", "delayed"), ("zero", "immediate")),
    )
]


@pytest.mark.parametrize("variant", VARIANTS, ids=lambda v: "-".join(str(x) for x in v.values()))
def test_step_equals_offline(variant):
    model = make_model(1, **variant)
    frames = event_counts(2, 14)
    with torch.no_grad():
        offline = model.run(frames)
        logits, spikes, _, state = run_streaming(model, frames)
    for layer, (a, b) in enumerate(zip(offline.spikes, spikes)):
        assert torch.equal(a, b), f"layer {layer + 1} spikes differ"
        rate = a.mean().item()
        assert 0.01 < rate < 0.95, f"layer {layer + 1} firing rate {rate:.3f}: test would not exercise the LIF"
    assert state.backbone.count == frames.shape[1]
    torch.testing.assert_close(logits, offline.logits, atol=1e-5, rtol=1e-5)


@pytest.mark.parametrize("reset,timing", [("subtract", "immediate"), ("zero", "delayed"), ("none", "delayed")])
def test_other_reset_variants_stream_exactly(reset, timing):
    model = make_model(2, reset=reset, reset_timing=timing)
    frames = event_counts(1, 10, seed=3)
    with torch.no_grad():
        offline = model.run(frames)
        logits, spikes, _, _ = run_streaming(model, frames)
    assert all(torch.equal(a, b) for a, b in zip(offline.spikes, spikes))
    torch.testing.assert_close(logits, offline.logits, atol=1e-5, rtol=1e-5)


def test_centered_lookahead_and_anytime_prediction():
    model = make_model(3, interface="centered")
    frames = event_counts(1, 8, seed=4)
    with torch.no_grad():
        _, _, anytime, state = run_streaming(model, frames)
        # the first k//2 steps only fill the ring buffer; the mean is still empty
        st = model.initial_state(1)
        _, st = model.step(frames[:, 0], st)
        _, st = model.step(frames[:, 1], st)
        assert st.backbone.count == 0
        _, st = model.step(frames[:, 2], st)
        assert st.backbone.count == 1
        # the anytime prediction after the last step is the head on the mean so far (T - 2 steps)
        assert not torch.equal(anytime[-1], model.flush(st)[0])
    assert state.backbone.count == 8
    # flushing twice changes nothing
    with torch.no_grad():
        again, state2 = model.flush(state)
    assert state2.backbone.count == 8


def test_sample_shorter_than_lookahead():
    model = make_model(4, interface="centered")
    frames = event_counts(1, 1, seed=5)
    with torch.no_grad():
        offline = model(frames)
        logits, _, _, _ = run_streaming(model, frames)
    torch.testing.assert_close(logits, offline, atol=1e-5, rtol=1e-5)


def test_chunked_offline_frontend_equals_whole():
    model = make_model(5, recurrent=True)
    frames = event_counts(2, 11, seed=6)
    with torch.no_grad():
        whole, _ = model.spiking_frontend(frames, time_chunk=64)
        chunked, _ = model.spiking_frontend(frames, time_chunk=3)
    assert all(torch.equal(a, b) for a, b in zip(whole, chunked))


def test_mamba_chunk_handoff_is_exact():
    model = make_model(6)
    block = model.mamba_blocks[0].mamba
    x = torch.randn(2, 13, 16)
    with torch.no_grad():
        whole, _ = block(x)
        first, state = block(x[:, :5])
        second, _ = block(x[:, 5:], state)
        steps, st = [], block.initial_state(2)
        for t in range(13):
            y, st = block.step(x[:, t], st)
            steps.append(y)
    torch.testing.assert_close(torch.cat([first, second], 1), whole, atol=1e-6, rtol=1e-5)
    torch.testing.assert_close(torch.stack(steps, 1), whole, atol=1e-6, rtol=1e-5)


def test_surrogate_gradient_trains():
    model = make_model(7).train()
    frames = event_counts(2, 6, seed=7)
    loss = torch.nn.functional.cross_entropy(model(frames), torch.tensor([0, 1]))
    loss.backward()
    grad = model.spiking_frontend.conv1.weight.grad
    assert grad is not None and grad.abs().sum() > 0, "no gradient reached conv1 through the spikes"


def test_wrong_frame_shape_is_refused():
    model = make_model(8)
    with pytest.raises(ValueError, match=r"expects \(B, T, 2, 18, 18\)"):
        model(torch.zeros(1, 4, 2, 34, 34))
    with pytest.raises(ValueError, match=r"expects \(B, 2, 18, 18\)"):
        model.step(torch.zeros(1, 2, 34, 34), model.initial_state(1))
