from urllib.parse import parse_qs, urlsplit

import pytest

from pipeline.stream.protocol import (
    PROFILE_SPECS,
    ServerAddressError,
    normalize_server,
    session_url,
)


@pytest.mark.parametrize(
    ("given", "want"),
    [
        ("localhost:8998", "ws://localhost:8998/api/chat"),
        ("gpu7", "ws://gpu7:8998/api/chat"),
        ("ws://10.0.0.2:9000", "ws://10.0.0.2:9000/api/chat"),
        ("wss://host:8998/", "wss://host:8998/api/chat"),
        ("https://host:443/api/chat", "wss://host:443/api/chat"),
        ("[::1]:8998", "ws://[::1]:8998/api/chat"),
    ],
)
def test_normalize(given: str, want: str) -> None:
    assert normalize_server(given) == want


@pytest.mark.parametrize("bad", ["", "ftp://x:1", "ws://:8998", "host:99999999"])
def test_bad_addresses(bad: str) -> None:
    with pytest.raises(ServerAddressError):
        normalize_server(bad)


def test_personaplex_url_carries_prompts_encoded_and_never_seed() -> None:
    url = session_url("h:1", "personaplex", "NATF2.pt", "You are a wise & friendly teacher.")
    parts = urlsplit(url)
    assert parts.path == "/api/chat"
    assert "+" not in parts.query and "%20" in parts.query
    q = parse_qs(parts.query)
    assert q == {
        "voice_prompt": ["NATF2.pt"],
        "text_prompt": ["You are a wise & friendly teacher."],
    }
    assert "seed" not in url
    with pytest.raises(ValueError, match="empty text prompt"):
        session_url("h:1", "personaplex", "NATF2.pt", " ")


def test_moshi_url_has_no_query_and_frame_counts() -> None:
    assert session_url("h:1", "moshi", "NATF2.pt", "x") == "ws://h:1/api/chat"
    assert PROFILE_SPECS["personaplex"].expected_output_frames(10) == 10
    assert PROFILE_SPECS["moshi"].expected_output_frames(10) == 9
    assert PROFILE_SPECS["moshi"].expected_output_frames(0) == 0
