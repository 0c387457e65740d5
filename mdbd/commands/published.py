"""`mdbd published`: other methods' published result maps (DBDF's own, for Shi's CUHK), listed and fetched."""

from __future__ import annotations

from mdbd.core.paths import command_line_path
from mdbd.evaluation.published import PUBLISHED_METHODS, fetch_published, find_published_folder


def register(sub) -> None:
    p = sub.add_parser("published", help="other methods' published result maps: list, fetch")
    cmds = p.add_subparsers(dest="published_command", required=True, metavar="ACTION")

    s = cmds.add_parser("list", help="the methods whose maps the study can score, their pattern, polarity and folder")
    s.set_defaults(func=_list)

    f = cmds.add_parser("fetch", help="get a method's published maps from a URL, an archive or an unpacked folder",
                        description="Downloads (5 s to connect: offline it fails within seconds) or unpacks a "
                                    "method's release, checks it holds every map, and installs it under "
                                    "data/published-maps/<dataset>/<method>/.")
    f.add_argument("method", choices=sorted(PUBLISHED_METHODS))
    f.add_argument("--source", default=None, metavar="URL_OR_PATH",
                   help="the release: a URL (from the authors' page), a local .zip/.tar archive, or an unpacked folder")
    f.add_argument("--out", type=command_line_path, default=None,
                   help="target folder (default data/published-maps/<dataset>/<method>)")
    f.add_argument("--raw-dir", type=command_line_path, default=None,
                   help="where downloaded archives are kept (default data/raw)")
    f.set_defaults(func=_fetch)


def _list(args) -> int:
    for key, m in PUBLISHED_METHODS.items():
        folder = find_published_folder(key, m.dataset)
        where = folder if folder else f"not found (mdbd published fetch {key} --source ...)"
        print(f"{key}: {m.label} ({m.citation}) on {m.dataset}; files '{m.pattern}', {m.polarity}; authors' page "
              f"{m.page}\n  maps here: {where}")
    return 0


def _fetch(args) -> int:
    out = fetch_published(args.method, args.source, out_dir=args.out, raw_dir=args.raw_dir)
    print(f"{args.method}: maps installed in {out}")
    return 0
