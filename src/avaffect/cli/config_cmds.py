"""Config commands: ``config show`` (the fully resolved config a run would use) and ``config list``."""

from __future__ import annotations

from pathlib import Path


def cmd_config_show(args) -> int:
    from avaffect.cli.train_cmds import apply_sets
    from avaffect.config import dump_config, load_config, make_config

    cfg = load_config(args.config) if args.config else make_config({})
    if args.set:
        cfg = make_config(apply_sets(cfg.model_dump(mode="json"), args.set), source="--set")
    print(dump_config(cfg), end="")
    return 0


def cmd_config_list(args) -> int:
    from avaffect.shipped import paper_block, paper_config_names  # no torch: see avaffect.shipped

    for name in paper_config_names():
        paper = paper_block(name)
        row = f"{paper.get('table', '')}: {paper.get('row', '')}" if paper else ""
        print(f"{name:<44} {row}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("config", help="show a fully resolved run config, or list the shipped paper configs")
    csub = p.add_subparsers(dest="config_command", required=True)
    s = csub.add_parser("show", help="print the fully resolved config (every default filled in) as YAML")
    s.add_argument("config", nargs="?", type=Path, help="a config YAML, or a shipped paper config's name "
                   "(e.g. rja_blstm/table1_m2); none = the defaults")
    s.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="replace one value (dotted path, YAML value), as `train --set`; repeatable")
    s.set_defaults(func=cmd_config_show)
    s = csub.add_parser("list", help="the paper configs shipped with avaffect, with their table rows")
    s.set_defaults(func=cmd_config_list)
