"""Regenerate the figures of docs/visualize.md: run `sirst visualize`, screenshot its HTML index in headless
Chromium and copy an example of each figure into docs/.

    python scripts/make_viz_figures.py --weights runs/nudt/best.pt --data /path/to/NUDT-SIRST \
        --methods tophat,ipi --max-images 24

Writes docs/visualize_index.png (the page as Chromium renders it), docs/visualize_example.png (the
image whose figure shows the most kinds of circles), docs/visualize_surface.png and
docs/pdfa_subsets.png. Chromium: `apt-get install -y chromium` (Debian); without it the screenshot is
skipped with a message.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars")


def screenshot(page: Path, png: Path, size: tuple[int, int] = (1400, 1000)) -> bool:
    """Render ``page`` with headless Chromium into ``png``; False when no Chromium is installed."""
    exe = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    if exe is None:
        print("no chromium found (apt-get install -y chromium): screenshot skipped", file=sys.stderr)
        return False
    with tempfile.TemporaryDirectory() as profile:
        cmd = [exe, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--screenshot={png.resolve()}",
               f"--window-size={size[0]},{size[1]}", page.resolve().as_uri()]
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
    return png.is_file()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--weights", action="append", default=[], help="[LABEL=]checkpoint (repeatable)")
    ap.add_argument("--methods", default="tophat,ipi", help="classical methods (default tophat,ipi)")
    ap.add_argument("--data", required=True, help="dataset root")
    ap.add_argument("--max-images", type=int, default=24)
    ap.add_argument("--work", default=None, help="folder for the full visualize output (default: a temporary one)")
    ap.add_argument("--docs", default=str(ROOT / "docs"))
    args = ap.parse_args()

    from sirst.evaluation import build_methods, load_samples
    from sirst.viz import visualize

    work = Path(args.work) if args.work else Path(tempfile.mkdtemp(prefix="sirst_viz_"))
    methods = build_methods(args.weights, args.methods)
    samples = load_samples(args.data, "auto", "test", args.max_images)
    res = visualize(samples, methods, work, title=f"{Path(args.data).name} test split: {', '.join(m.name for m in methods)}")
    docs = Path(args.docs)
    docs.mkdir(parents=True, exist_ok=True)

    def kinds(r) -> tuple[int, int]:
        v = r.methods.values()
        seen = sum(any(x[k] > 0 for x in v) for k in ("detected", "missed", "false_alarms"))
        return seen, -len(r.methods)

    best = max(res.records, key=kinds)
    shutil.copyfile(work / best.figure, docs / "visualize_example.png")
    if best.surface:
        shutil.copyfile(work / best.surface, docs / "visualize_surface.png")
    shutil.copyfile(res.curves_png, docs / "pdfa_subsets.png")
    shot = screenshot(res.index, docs / "visualize_index.png")
    print(f"visualize output in {work}; wrote docs/visualize_example.png ({best.id}), visualize_surface.png, "
          f"pdfa_subsets.png" + (", visualize_index.png" if shot else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
