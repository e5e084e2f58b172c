"""Folder and file names: safe everywhere, unique, capped in bytes, deterministic."""

from __future__ import annotations

import random
from datetime import timezone

import pytest
from namecheck import valid_everywhere

from zexport.core.naming import (
    name_key,
    sanitize_component,
    truncate_utf8,
    unique_names,
)
from zexport.run.plan import FolderNamer, Plan
from zexport.sources.archive import ConversationHead

HOSTILE = ["a/b", "..", ".", "CON", "nul.txt", "com1", "what: is * this?", "🚀🔥💯",
           "中" * 100, "", "trailing. . ", "nul\x00byte", "\u202eevil", "Cafe\u0301",
           "../../etc/passwd", "C:\\x", "/abs", "COM\u00b9", " lead"]


@pytest.mark.parametrize("title", HOSTILE)
def test_sanitized_names_are_valid_everywhere(title: str) -> None:
    namer = FolderNamer(timezone.utc)
    namer.add("id-1", title, 1_700_000_000)
    namer.add("id-2", title, None)
    for name in namer.assign().values():
        assert valid_everywhere(name), repr(name)


def test_truncate_cuts_on_whole_characters() -> None:
    text = "é" * 200  # 2 bytes each
    cut = truncate_utf8(text, 255)
    assert len(cut.encode()) == 254
    assert cut == "é" * 127
    emoji = "👍🏽" * 100
    cut = truncate_utf8(emoji, 10)
    assert len(cut.encode()) <= 10
    cut.encode("utf-8")  # no lone surrogate


def test_the_ascii_cut_is_the_grapheme_cut() -> None:
    # ASCII text is cut by slicing (without loading `regex`): it must give what cutting on
    # extended grapheme clusters gives, CR LF (the one cluster of two ASCII characters)
    # included.
    import regex

    rng = random.Random(7)
    alphabet = "ab \r\n\t.-"
    for _ in range(2000):
        text = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40)))
        cap = rng.randint(1, 30)
        by_cluster = ""
        for cluster in regex.findall(r"\X", text):
            if len((by_cluster + cluster).encode()) > cap:
                break
            by_cluster += cluster
        assert truncate_utf8(text, cap) == by_cluster, (text, cap)


def test_long_cjk_title_fits_255_bytes_with_date_and_suffix() -> None:
    namer = FolderNamer(timezone.utc)
    title = "数据" * 80  # 480 bytes
    namer.add("aaaaaaaa-1", title, 1_700_000_000)
    namer.add("bbbbbbbb-2", title, 1_700_000_001)
    names = namer.assign()
    assert all(len(n.encode()) <= 255 for n in names.values())
    assert names["aaaaaaaa-1"].startswith("2023-11-14 数据")
    assert names["bbbbbbbb-2"].endswith("(bbbbbbbb)")
    assert names["aaaaaaaa-1"] != names["bbbbbbbb-2"]


def test_equal_titles_get_unique_names_case_and_normalisation_insensitive() -> None:
    namer = FolderNamer(timezone.utc)
    titles = ["New chat"] * 50 + ["Report", "REPORT", "Café", "Cafe\u0301"]
    for i, t in enumerate(titles):
        namer.add(f"conv-{i:04d}", t, 1_700_000_000)
    names = namer.assign()
    keys = [name_key(n) for n in names.values()]
    assert len(set(keys)) == len(titles)
    assert names["conv-0000"] == "2023-11-14 New chat"  # the earliest keeps the plain name


def test_names_do_not_depend_on_input_order() -> None:
    entries = [(f"id-{i:03d}", random.Random(i).choice(["New chat", "x", "Y", "y"]),
                1_700_000_000 + (i % 3) * 86400) for i in range(200)]
    results = []
    for seed in range(3):
        shuffled = entries[:]
        random.Random(seed).shuffle(shuffled)
        namer = FolderNamer(timezone.utc)
        for e in shuffled:
            namer.add(*e)
        results.append(namer.assign())
    assert results[0] == results[1] == results[2]


def test_a_suffixed_name_never_takes_another_conversations_plain_name() -> None:
    """Two "Notes" share a name, so the later gets "Notes (abcdefgh)"; but a third
    conversation is titled exactly that. It keeps its plain name, and the suffix
    grows until free (the plan claims each name in one statement: a name already
    taken must be seen as taken)."""
    namer = FolderNamer(timezone.utc)
    namer.add("aaaaaaaa-1", "Notes", None)
    namer.add("abcdefgh1234-2", "Notes", None)
    namer.add("zzz-3", "Notes (abcdefgh)", None)
    names = namer.assign()
    assert names == {"aaaaaaaa-1": "Notes", "abcdefgh1234-2": "Notes (abcdefgh1234)",
                     "zzz-3": "Notes (abcdefgh)"}


def test_names_a_format_writes_itself_are_never_given_to_a_conversation() -> None:
    plan = Plan(":memory:")
    try:
        plan.add([ConversationHead("c1", "index.html", None, None, None),
                  ConversationHead("c2", "INDEX.HTML", None, None, None),
                  ConversationHead("c3", "other", None, None, None)], timezone.utc)
        plan.assign_folders(["index.html"])
        folders = plan.folders()
    finally:
        plan.close()
    assert folders == {"c1": "index.html (c1)", "c2": "INDEX.HTML (c2)", "c3": "other"}


def test_windows_reserved_names_are_renamed() -> None:
    assert sanitize_component("CON") == "CON_"
    assert sanitize_component("nul.txt") == "nul_.txt"
    assert sanitize_component("console") == "console"


def test_unique_file_names_within_a_folder() -> None:
    assert unique_names(["a.png", "A.png", "a.png", "b"]) == [
        "a.png", "A (2).png", "a (3).png", "b"]


def test_date_prefix_spells_dates_as_strftime_does() -> None:
    """The fast (ISO formatter) path gives the same prefix as strftime, including
    years before 1000 (unpadded by strftime) and times out of range."""
    from datetime import datetime

    from zexport.core.naming import date_prefix
    from zexport.core.timezones import resolve_tz

    rng = random.Random(3)
    for zone in ("UTC", "Europe/Paris", "Asia/Kolkata", "America/St_Johns"):
        tz = resolve_tz(zone)
        for ts in [rng.randint(-70_000_000_000, 260_000_000_000) for _ in range(5000)]:
            try:
                expected = datetime.fromtimestamp(ts, tz).strftime("%Y-%m-%d ")
            except (OverflowError, OSError, ValueError):
                expected = ""
            assert date_prefix(ts, tz) == expected, (zone, ts)


@pytest.mark.parametrize("text, cap, expected", [
    ("ab👨\u200d👩\u200d👧", 2 + 4 + 3 + 4, "ab"),        # inside a family: all of it goes
    ("ab👨\u200d👩\u200d👧x", 2 + 18, "ab👨\u200d👩\u200d👧"),  # after it: kept whole
    ("ab🇫🇷🇩🇪", 2 + 4 + 4 + 4, "ab🇫🇷"),                # half a flag never stays
    ("ab👍🏽", 2 + 4, "ab"),                              # no toneless thumb
    ("cafe\u0301s", 4, "caf"),                            # e + accent goes together
    ("a1\ufe0f\u20e3z", 2, "a"),                          # keycap one: all or nothing
    ("कि" * 100, 10, "कि"),                               # a vowel sign stays with its letter
    ("ab👩🏽\u200d💻", 2 + 4 + 4 + 3, "ab"),                 # skin-toned ZWJ sequence, whole
])
def test_truncate_keeps_user_perceived_characters_whole(text: str, cap: int,
                                                         expected: str) -> None:
    cut = truncate_utf8(text, cap)
    assert cut == expected
    assert len(cut.encode()) <= cap


def test_truncate_of_one_huge_cluster_still_keeps_something() -> None:
    zalgo = "Z" + "\u0301" * 300
    assert truncate_utf8(zalgo, 50) == "Z"  # not an empty name
