"""The sample's message text: markdown blocks, citations and sources, made once per run.

Pre-rendered pools (paragraphs, code, lists, tables...) and their citation
cuts, so that a message is one ``choices`` and a ``join``; the answer parts
are shaped as each provider's transform writes them (:mod:`zexport.sample.generator`).
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from typing import Any
from urllib.parse import quote

from zexport.sample import text as tx
from zexport.sample.attachments import uuid_like
from zexport.sample.specials import HAZARD_TEXT

_CITED_RATE = {"chatgpt": 0.07, "claude": 0.10, "perplexity": 0.6}


class Content:
    """The per-run text pools, and answers drawn from them with the run's one rng."""

    def __init__(self, rng: random.Random) -> None:
        """Pre-render markdown blocks (and their citation cuts) once per run, so a
        message is one ``choices`` + ``join``."""
        self.rng = rng
        self.provider = ""  # whose answer is being made (its citations differ)
        self.sources: dict[str, list[dict[str, Any]]] = {}  # per provider, see _source_pool
        self.paragraphs = [tx.paragraph(rng) for _ in range(1500)]
        self.lists = [tx.list_block(rng) for _ in range(300)]
        self.tables = [tx.table_block(rng) for _ in range(150)]
        pools: list[tuple[list[str], int]] = [  # (pool, weight in the block mix)
            (self.paragraphs, 50),
            ([tx.code_block(rng) for _ in range(300)], 14),
            (self.lists, 12),
            ([tx.heading(rng) for _ in range(200)], 9),
            (self.tables, 6),
            ([tx.quote_block(rng) for _ in range(100)], 4),
            ([tx.latex_block(rng) for _ in range(40)], 3),
        ]
        blocks: list[str] = []
        for pool, weight in pools:
            blocks.extend(rng.choice(pool) for _ in range(weight * 40))
        rng.shuffle(blocks)
        self.blocks = blocks
        self.cuts = {b: tx.cut_points(b) for pool, _ in pools for b in pool}
        self.headings = [tx.heading(rng) for _ in range(200)]
        self.user_texts = [tx.paragraph(rng, 1, 3) for _ in range(1500)]
        self.user_code = [tx.code_block(rng) for _ in range(100)]
        self.titles_common = list(tx.TOPICS)
        self.titles_rare = [
            " ".join(rng.choices(tx.WORDS, k=rng.randint(2, 6))).capitalize()
            for _ in range(4000)
        ]

    def user_text(self) -> str:
        rng = self.rng
        r = rng.random()
        if r < 0.70:
            return rng.choice(self.user_texts)
        if r < 0.90:
            return rng.choice(self.user_texts) + "\n\n" + rng.choice(self.user_texts)
        return rng.choice(self.user_texts) + "\n\n" + rng.choice(self.user_code)

    def _assistant_blocks(self) -> list[str]:
        rng = self.rng
        r = rng.random()
        k = rng.randint(15, 45) if r < 0.03 else rng.randint(1, 6)
        blocks = rng.choices(self.blocks, k=k)
        if r > 0.75:
            blocks.insert(0, rng.choice(self.headings))
        return blocks

    def _sources(self, count: int, earlier: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """``count`` source-url parts with the keys (and key order) of the provider's
        transform; now and then a source cited before in the message, under a new id."""
        rng = self.rng
        parts: list[dict[str, Any]] = []
        for _ in range(count):
            if earlier and rng.random() < 0.25:
                part = {**rng.choice(earlier), "sourceId": uuid_like(rng)}
            else:
                part = {**rng.choice(self._source_pool()), "sourceId": uuid_like(rng)}
                earlier.append(part)
            parts.append(part)
        return parts

    def _source_pool(self) -> list[dict[str, Any]]:
        """This provider's sources, made once (a citation is then one dict copy)."""
        pool = self.sources.get(self.provider)
        if pool is None:
            pool = self.sources[self.provider] = [self._source() for _ in range(2000)]
        return pool

    def _source(self) -> dict[str, Any]:
        rng = self.rng
        site = rng.choice(tx.SOURCE_SITES)
        slug = "-".join(rng.choices(tx.WORDS[:150], k=3))
        part: dict[str, Any] = {"type": "source-url", "sourceId": "",
                                "url": f"https://{site}/{quote(slug)}"}
        if rng.random() < 0.9:  # a citation without a title is dirt the app lets through
            part["title"] = slug.replace("-", " ").title()
        if self.provider == "claude":
            part["attribution"] = site.split(".")[0].title()
            part["icon_url"] = f"https://favicons.example.invalid/s2/favicons?sz=64&domain={site}"
        else:
            part["attribution"] = site if self.provider == "chatgpt" else site.split(".")[0]
            part["snippet"] = rng.choice(self.user_texts)[:160]
        return part

    def _cited(self, blocks: Sequence[str], must: Sequence[int] = ()) -> list[dict[str, Any]]:
        """The answer ``blocks`` cut at a few citation points, a source in each cut.

        ``must`` are indexes of blocks that get at least one cut (if they have
        any place for one). Text parts are pieces of one text: joined with
        nothing between them they give the answer back.
        """
        rng = self.rng
        style = 0 if self.provider == "chatgpt" else 1
        candidates: list[int] = []
        forced: list[int] = []
        offset = 0
        for i, block in enumerate(blocks):
            cuts = self.cuts[block][style] if block in self.cuts else ()
            if cuts:
                candidates.extend(offset + c for c in cuts)
                if i in must:
                    forced.append(offset + rng.choice(cuts))
            offset += len(block) + 2
        body = "\n\n".join(blocks)
        chosen = set(forced)
        want = rng.randint(1, 4)
        if candidates and len(chosen) < want:
            chosen.update(rng.sample(candidates, min(len(candidates), want - len(chosen))))
        parts: list[dict[str, Any]] = []
        cited: list[dict[str, Any]] = []
        last = 0
        for pos in sorted(chosen):
            parts.append({"type": "text", "text": body[last:pos]})
            parts.extend(self._sources(1 if rng.random() < 0.65 else 2, cited))
            last = pos
        if last < len(body):
            parts.append({"type": "text", "text": body[last:]})
        if not chosen or (self.provider == "perplexity" and rng.random() < 0.3):
            parts.extend(self._sources(rng.randint(1, 3), cited))  # cited at the very end
        return parts

    def assistant_parts(self, provider: str, force: frozenset[str]) -> list[dict[str, Any]]:
        """An answer's parts in ``provider``'s shape; ``force``: the specials asked for."""
        rng = self.rng
        self.provider = provider
        if "sources" in force:  # a paragraph, a list and a table, each cut by a citation
            blocks = [rng.choice(self.paragraphs), rng.choice(self.lists),
                      rng.choice(self.tables)]
            return self._cited(blocks, must=(0, 1, 2))
        blocks = self._assistant_blocks()
        r = rng.random()
        if "hazards" not in force and r < _CITED_RATE[self.provider]:
            parts = self._cited(blocks)
        else:
            parts = [{"type": "text", "text": "\n\n".join(blocks)}]
        if "unknown-parts" in force or r > 0.99:
            parts.insert(0, {"type": "reasoning", "text": rng.choice(self.user_texts)})
            if "unknown-parts" in force:
                parts.append({"type": "tool-call", "toolName": "web_search",
                              "args": {"query": "zexport", "max": 3}, "state": None})
        elif r > 0.985:  # a second text part (Claude's research answers have several)
            parts.append({"type": "text", "text": rng.choice(self.user_texts)})
        if "hazards" in force:
            parts[0]["text"] = HAZARD_TEXT + "\n\n".join(rng.choices(self.blocks, k=150))
        return parts
