from __future__ import annotations

from patterns import pattern, seed_of
from peer import Peer

from tkshm import ipc


def test_image_published_by_one_process_is_read_by_another(key: str, peer: Peer) -> None:
    peer.call("publish", key=key, width=64, height=48, seed=4321)
    image = ipc.read_image(key=key)
    assert image.size == (64, 48)
    assert seed_of(image) == 4321
    assert image.tobytes() == pattern(64, 48, 4321).tobytes()
    assert peer.call("detach", key=key)["removed"] is True
