"""`mdbd report`: REPORT.md and report.html for a results folder, from its tables and figures on disk."""

from __future__ import annotations

from mdbd.commands import add_results_folder_options
from mdbd.core.errors import ConfigError
from mdbd.core.paths import REPO_ROOT, command_line_path, resolve


def register(sub) -> None:
    p = sub.add_parser("report", help="write REPORT.md and report.html for a results folder",
                       description="Write results/<profile>/<dataset>/REPORT.md and report.html from the tables "
                                   "and figures in that folder (mdbd.chain.report_md): the study's findings in "
                                   "order, every "
                                   "table and figure inline with its provenance, quoted numbers marked. `mdbd "
                                   "reproduce` does this at the end of a chain. A planned table or figure the folder "
                                   "lacks is listed (exit status 1 with --strict). --check-browser then opens "
                                   "report.html in a headless Chromium (Debian: apt-get install chromium) and fails "
                                   "unless every figure loads and the page renders (`make report-check`).")
    add_results_folder_options(p)
    p.add_argument("--folder", type=command_line_path, default=None, metavar="DIR",
                   help="another results folder (laid out like results/<profile>/<dataset>) instead")
    p.add_argument("--strict", action="store_true", help="exit status 1 when a planned table or figure is missing")
    p.add_argument("--check-browser", action="store_true",
                   help="then open report.html in headless Chromium: every figure must load and the page render")
    p.add_argument("--screenshot", type=command_line_path, default=None, metavar="PNG",
                   help="with --check-browser: where to save the screenshot (default build/report-check/"
                        "<profile>-<dataset>.png)")
    p.add_argument("--window", default="1280x2400", metavar="WxH", help="the screenshot's size (default 1280x2400)")
    p.set_defaults(func=_run)


def _run(args) -> int:
    from pathlib import Path

    from mdbd.chain.report_md import check_in_browser, write_report  # lazy: keeps torch out of mdbd --help

    result = write_report(args.profile, args.dataset, folder=resolve(args.folder) if args.folder else None)
    print(f"wrote {result.markdown}\nwrote {result.html}\n{len(result.tables)} tables, {len(result.figures)} figures")
    for path in result.not_produced:
        print(f"  not produced by this run (conditional): {path}")
    for path in result.missing:
        print(f"  MISSING (planned): {path}")
    status = 1 if args.strict and result.missing else 0
    if args.check_browser:
        try:
            width, height = (int(v) for v in args.window.lower().split("x"))
        except ValueError:
            raise ConfigError(f"--window {args.window!r}: give WIDTHxHEIGHT, e.g. 1280x2400") from None
        shot = Path(resolve(args.screenshot)) if args.screenshot else \
            REPO_ROOT / "build" / "report-check" / f"{args.profile}-{args.dataset}.png"
        check = check_in_browser(result.html, shot, width=width, height=height)
        print(f"browser: {check.loaded} of {check.total} images loaded"
              + (f"; NOT loaded: {', '.join(check.broken)}" if check.broken else "")
              + f"; screenshot {check.screenshot} ({'renders' if check.screenshot_ok else 'BLANK or not written'})")
        if not check.ok:
            status = 1
    return status
