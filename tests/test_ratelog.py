"""RateLimitedLogger: one message per key per interval, with the count suppressed."""

import logging

from mlwatcher_exporter.ratelog import RateLimitedLogger


def test_bounded_rate(caplog, clock):
    log = RateLimitedLogger(logging.getLogger("t"), interval=60.0, _clock=clock)
    with caplog.at_level(logging.WARNING):
        assert log.warning("a", "first")
        assert not log.warning("a", "again")
        assert not log.warning("a", "again")
        assert log.warning("b", "other key")
        clock.advance(60.0)
        assert log.warning("a", "later")
    messages = [r.getMessage() for r in caplog.records]
    assert messages == ["first", "other key", "later (2 similar message(s) suppressed)"]
