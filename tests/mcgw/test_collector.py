"""The collector pause around translation passes: nestable, thread-safe, and never enables a collector the
user disabled."""

from __future__ import annotations

import gc
import threading
from collections.abc import Iterator

import pytest

from mcgw.support import collector


@pytest.fixture(autouse=True)
def _collector_enabled() -> Iterator[None]:
    gc.enable()
    yield
    gc.enable()


def test_paused_disables_the_collector_and_enables_it_again_even_after_an_error() -> None:
    enabled_inside: list[bool] = []

    def failing_pass() -> None:
        with collector.paused():
            enabled_inside.append(gc.isenabled())
            raise RuntimeError("translation failed")

    with pytest.raises(RuntimeError):
        failing_pass()
    assert enabled_inside == [False]
    assert gc.isenabled()


def test_nested_pauses_enable_the_collector_only_when_the_outer_one_ends() -> None:
    with collector.paused():
        with collector.paused():
            assert not gc.isenabled()
        assert not gc.isenabled()
    assert gc.isenabled()


def test_a_collector_disabled_before_stays_disabled() -> None:
    gc.disable()
    with collector.paused():
        pass
    assert not gc.isenabled()


def test_overlapping_passes_in_two_threads_enable_the_collector_when_the_last_ends() -> None:
    first_in, second_in, first_may_leave = threading.Event(), threading.Event(), threading.Event()
    seen_between: list[bool] = []

    def first() -> None:
        with collector.paused():
            first_in.set()
            first_may_leave.wait(5)

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(5)
    with collector.paused():
        second_in.set()
        first_may_leave.set()
        thread.join(5)
        seen_between.append(gc.isenabled())  # the first pass has ended, this one has not
    assert seen_between == [False]
    assert gc.isenabled()
