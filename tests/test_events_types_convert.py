import numpy as np
import pytest

import neurodeploy.events as E


def _events(n=1000, size=(64, 48), seed=0):
    rng = np.random.default_rng(seed)
    return E.make_events(rng.integers(0, size[0], n), rng.integers(0, size[1], n),
                         np.sort(rng.integers(0, 5_000_000, n)), rng.integers(0, 2, n))


def test_event_dtype_fields():
    assert E.EVENT_DTYPE.names == ("x", "y", "t", "p")
    assert E.EVENT_DTYPE["t"] == np.dtype("<i8")


def test_recording_checks_bounds_and_dtype():
    ev = _events()
    rec = E.Recording(ev, (64, 48))
    assert rec.sensor_size == (64, 48) and len(rec) == 1000
    with pytest.raises(ValueError, match="outside"):
        E.Recording(ev, (10, 10))
    with pytest.raises(ValueError, match="EVENT_DTYPE"):
        E.Recording(E.to_tonic(ev), (64, 48))


@pytest.mark.parametrize("to, back", [(E.to_tonic, E.from_tonic), (E.to_faery, E.from_faery),
                                      (E.to_aedat, E.from_aedat), (E.to_dv, E.from_dv)])
def test_converters_round_trip(to, back):
    ev = _events()
    assert np.array_equal(back(to(ev)), ev)


def test_from_structured_polarity_minus_one():
    arr = np.zeros(2, dtype=[("x", int), ("y", int), ("t", int), ("p", int)])
    arr["p"] = [-1, 1]
    assert E.from_structured(arr)["p"].tolist() == [0, 1]


def test_faery_layout_matches_faery():
    import faery
    assert E.FAERY_DTYPE == faery.EVENTS_DTYPE
