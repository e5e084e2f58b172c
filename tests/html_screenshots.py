"""Screenshots of the HTML export in headless Chromium, for people to look at (issue 14).

Not a test: it exports the app's own ``realistic.db`` and ``table.db`` and a
200-conversation sample to HTML, then saves a conversation page in light and
dark mode, the table page, and the index after a full-text search. Usage::

    python tests/html_screenshots.py OUT_DIR [--fixtures ../shared/fixtures/app]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from cdp import Browser, find_chromium  # noqa: E402


def export(db: Path, out: Path) -> None:
    subprocess.run([sys.executable, "-m", "zexport", "run", "--db", str(db), "--out", str(out),
                    "--format", "html", "--tz", "UTC", "--progress", "none",
                    "--no-downloads", "-q"], check=False, timeout=300)


def first_page(out: Path, needle: str) -> Path:
    for page in sorted(out.rglob("conversation.html")):
        if needle in page.read_text(encoding="utf-8"):
            return page
    raise SystemExit(f"no page in {out} contains {needle!r}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dest", type=Path)
    ap.add_argument("--fixtures", type=Path,
                    default=Path(__file__).resolve().parents[2] / "shared" / "fixtures" / "app")
    ap.add_argument("--query", default="cafe comprehension", help="typed into the index's search")
    args = ap.parse_args()
    chromium = find_chromium()
    if chromium is None:
        raise SystemExit("chromium is not installed")
    args.dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="zexport-shots-") as tmp:
        root = Path(tmp)
        export(args.fixtures / "realistic.db", root / "realistic")
        export(args.fixtures / "table.db", root / "table")
        sample = root / "sample.db"
        subprocess.run([sys.executable, "-m", "zexport", "sample", str(sample), "-n", "200",
                        "--seed", "0"], check=True, timeout=120, capture_output=True)
        export(sample, root / "sample")
        browser = Browser(chromium, root / "profile")
        try:
            page = browser.new_page()
            cited = first_page(root / "realistic", "<sup")
            page.goto(cited.as_uri())
            page.eval("document.querySelector('article.msg sup').closest('article')"
                      ".scrollIntoView()")
            page.screenshot(args.dest / "conversation-light.png")
            page.screenshot(args.dest / "conversation-dark.png", dark=True)
            page.goto(first_page(root / "table", "<table").as_uri())
            page.screenshot(args.dest / "table-light.png")
            page.goto((root / "sample" / "index.html").as_uri())
            query = args.query
            page.eval(f"""(() => {{ const q = document.getElementById('q');
                q.value = {json.dumps(query)}; q.dispatchEvent(new Event('input')); }})()""")
            page.wait_for("document.body.dataset.state === 'ready'")
            page.screenshot(args.dest / "search-light.png")
            hits = page.eval("[...document.querySelectorAll('#list li a')].length")
            print(f"search {query!r}: {hits} conversations; pages: {cited}")
        finally:
            browser.close()


if __name__ == "__main__":
    main()
