"""The bearer token: where it comes from, how it is compared, never shown."""

import pytest

from mlwatcher_exporter.auth import BearerToken, is_loopback, load_token

SECRET = "0123456789abcdef-secret"


def test_check_accepts_only_the_exact_bearer_token():
    token = BearerToken(SECRET)
    assert token.check(f"Bearer {SECRET}") and token.check(f"bearer  {SECRET} ")
    for header in (None, "", SECRET, f"Basic {SECRET}", f"Bearer {SECRET[:-1]}",
                   f"Bearer {SECRET}x", "Bearer", "Bearer é"):
        assert not token.check(header), header
    assert SECRET not in repr(token)


def test_load_from_a_file_or_the_environment(tmp_path):
    path = tmp_path / "token"
    path.write_text(f"  {SECRET}\n")
    assert load_token("X", str(path), {"X": "ignored-because-file"}).check(f"Bearer {SECRET}")
    assert load_token("X", None, {"X": SECRET}).check(f"Bearer {SECRET}")
    assert load_token("X", None, {}) is None


@pytest.mark.parametrize("content, message", [
    ("", "is empty"), ("short", "must have at least 16"),
    ("with spaces inside it", "without spaces"),
])
def test_bad_tokens_are_refused_without_showing_them(tmp_path, content, message):
    path = tmp_path / "token"
    path.write_text(content)
    with pytest.raises(ValueError, match=message) as error:
        load_token("X", str(path))
    assert content not in str(error.value) or not content
    with pytest.raises(ValueError, match="cannot read it"):
        load_token("X", str(tmp_path / "missing"))


def test_loopback():
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("::")
