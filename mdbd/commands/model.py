"""`mdbd model`: the Table III presets with their modules and parameter counts; optionally their cost."""

from __future__ import annotations

import argparse

from mdbd.errors import ConfigError


def register(subparsers: argparse._SubParsersAction) -> None:
    parser = subparsers.add_parser("model", help="list the model presets (Table III rows)",
                                   description="One row per preset: name, Table III label, modules, parameters.")
    parser.add_argument("--summary", action="store_true", help="print the preset table (the default action)")
    parser.add_argument("--markdown", action="store_true", help="print the table as Markdown (for the README)")
    parser.add_argument("--cost", action="store_true",
                        help="also measure FLOPs and the median CPU forward time of each preset (slow)")
    parser.add_argument("--size", type=int, default=320, help="input side for --cost (default 320)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads for --cost (default 2)")
    parser.add_argument("--runs", type=int, default=3, help="timed forward passes per preset for --cost")
    parser.set_defaults(func=run)


def summary_rows(cost: bool = False, size: int = 320, threads: int = 2, runs: int = 3) -> list[dict[str, str]]:
    """One dict per preset with the printed columns."""
    from mdbd.model import PRESETS, MultiANet, count_parameters

    rows = []
    for name, spec in PRESETS.items():
        model = MultiANet(**spec.switches)
        total = count_parameters(model)
        decoder = total - count_parameters(model.backbone)
        row = {"preset": name, "Table III label": spec.table_label, "modules": "+".join(spec.modules),
               "params": f"{total:,}", "decoder params": f"{decoder:,}"}
        if cost:
            row.update(measure_cost(model, size=size, threads=threads, runs=runs))
        rows.append(row)
    return rows


def measure_cost(model, size: int = 320, threads: int = 2, runs: int = 3) -> dict[str, str]:
    """Forward FLOPs (backbone / decoder share) and the median CPU forward time at batch 1."""
    import torch

    # mdbd.bench imports pandas: only when costs are asked for.
    from mdbd.bench import count_flops, median_seconds

    if size < 16 or runs < 1 or threads < 1:
        raise ConfigError(f"--size must be >= 16, --runs and --threads >= 1; got {size}, {runs}, {threads}")
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        model = model.eval()
        total, backbone = count_flops(model, size), count_flops(model.backbone, size)
        x = torch.rand(1, 3, size, size)
        with torch.no_grad():
            seconds = median_seconds(lambda: model(x), runs, 1, torch.device("cpu"))  # 1 warm-up pass
    finally:
        torch.set_num_threads(previous)
    return {"GFLOPs": f"{total / 1e9:.1f}", "decoder/VGG FLOPs": f"{(total - backbone) / backbone:.1%}",
            f"CPU s ({threads} thr)": f"{seconds:.2f}"}


def format_table(rows: list[dict[str, str]], markdown: bool = False) -> str:
    columns = list(rows[0])
    numeric = {c for c in columns if all(r[c].replace(",", "").replace(".", "").rstrip("%").isdigit() for r in rows)}
    if markdown:
        lines = ["| " + " | ".join(columns) + " |",
                 "|" + "|".join("---:" if c in numeric else "---" for c in columns) + "|"]
        lines += ["| " + " | ".join(r[c] for c in columns) + " |" for r in rows]
        return "\n".join(lines)
    widths = {c: max(len(c), *(len(r[c]) for r in rows)) for c in columns}

    def fmt(values: dict[str, str]) -> str:
        return "  ".join(values[c].rjust(widths[c]) if c in numeric else values[c].ljust(widths[c])
                         for c in columns).rstrip()

    return "\n".join([fmt({c: c for c in columns}), "  ".join("-" * widths[c] for c in columns)]
                     + [fmt(r) for r in rows])


def run(args: argparse.Namespace) -> int:
    rows = summary_rows(cost=args.cost, size=args.size, threads=args.threads, runs=args.runs)
    print(format_table(rows, markdown=args.markdown))
    if args.cost:
        print(f"\ninput {args.size}x{args.size}, batch 1, median of {args.runs} CPU forward passes")
    return 0
