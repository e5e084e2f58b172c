"""Branch structure: the active path, and every branch in a stable order."""

from __future__ import annotations

from zexport.model import Conversation, Message


def msg(mid: str, parent: str | None, order: int, sibling_index: int = 0) -> Message:
    return Message(id=mid, role="user", parts=[{"type": "text", "text": mid}], parts_raw="",
                   parts_error=None, created_at=None, updated_at=None, order_index=order,
                   parent_id=parent, sibling_ids=None, sibling_index=sibling_index)


def conv(messages: list[Message], current: str | None) -> Conversation:
    return Conversation(id="c", title="t", provider="chatgpt", created_at=None,
                        updated_at=None, message_count=None, current_node_id=current,
                        messages=messages, folder="t")


TREE = [msg("a", None, 0), msg("b1", "a", 1, 0), msg("c1", "b1", 2), msg("b2", "a", 3, 1),
        msg("c2", "b2", 4)]


def test_active_branch_follows_current_node_not_the_newest() -> None:
    assert [m.id for m in conv(TREE, "c1").active_branch()] == ["a", "b1", "c1"]
    assert [m.id for m in conv(TREE, "c2").active_branch()] == ["a", "b2", "c2"]


def test_active_branch_falls_back_to_last_message() -> None:
    assert [m.id for m in conv(TREE, None).active_branch()] == ["a", "b2", "c2"]
    assert [m.id for m in conv(TREE, "missing").active_branch()] == ["a", "b2", "c2"]


def test_flat_conversation_is_all_messages() -> None:
    flat = [msg(x, None, i) for i, x in enumerate("abc")]
    assert [m.id for m in conv(flat, None).active_branch()] == ["a", "b", "c"]


def test_missing_parent_starts_the_branch_there() -> None:
    msgs = [msg("a", None, 0), msg("x", "gone", 1), msg("y", "x", 2)]
    assert [m.id for m in conv(msgs, "y").active_branch()] == ["x", "y"]


def test_tree_order_keeps_each_branch_with_its_continuation() -> None:
    order = [(m.id, n, k) for m, n, k in conv(TREE, "c1").tree_order()]
    assert order == [("a", 1, 1), ("b1", 1, 2), ("c1", 1, 1), ("b2", 2, 2), ("c2", 1, 1)]


def test_cycles_do_not_hang_or_lose_messages() -> None:
    msgs = [msg("a", "b", 0), msg("b", "a", 1)]
    c = conv(msgs, "a")
    assert {m.id for m in c.active_branch()} == {"a", "b"}
    assert sorted(m.id for m, _, _ in c.tree_order()) == ["a", "b"]
