"""Model commands: ``models`` and ``convert-official``."""

from __future__ import annotations

import json
from pathlib import Path

from avaffect.errors import AvaffectError


def cmd_models(args) -> int:
    import torch

    from avaffect.models import create_model, get_entry, list_models
    from avaffect.models.registry import preset_yaml

    if args.write_yaml is not None:  # the shipped model YAMLs are generated here from the typed configs
        from avaffect.files import atomic_write_text

        names = args.names or [p.stem for p in sorted(args.write_yaml.glob("*.yaml"))]
        for name in names:
            print(f"wrote {atomic_write_text(args.write_yaml / f'{name}.yaml', preset_yaml(name))}")
        return 0

    print(f"{'model':<18} {'params':>10}  description (d_audio={args.d_audio}, d_video={args.d_video}, "
          f"L={args.window})")
    for name in list_models():
        entry = get_entry(name)
        params = {"window_length": args.window} if "window_length" in entry.config_cls.model_fields else {}
        model = create_model(name, args.d_audio, args.d_video, params)
        n = sum(p.numel() for p in model.parameters() if isinstance(p, torch.nn.Parameter))
        print(f"{name:<18} {n:>10,}  {entry.summary}")
    return 0


def register(sub) -> None:
    p = sub.add_parser("models", help="list the model presets with parameter counts")
    p.add_argument("--d-audio", type=int, default=128)
    p.add_argument("--d-video", type=int, default=512)
    p.add_argument("--window", type=int, default=300)
    p.add_argument("--write-yaml", type=Path, metavar="DIR", help="write each preset's defaults as a commented "
                   "YAML into DIR (the presets named, else those DIR already holds)")
    p.add_argument("names", nargs="*", help="with --write-yaml: the presets to write")
    p.set_defaults(func=cmd_models)
    register_convert(sub)
    register_export(sub)


def cmd_convert_official(args) -> int:
    from avaffect.models.official import convert_official

    path = convert_official(args.checkpoint, args.variant, args.out, audio_weights=args.audio_weights,
                            video_weights=args.video_weights, hop=args.hop)
    print(f"wrote {path}")
    return 0


def register_convert(sub) -> None:
    # no `choices=`: listing the variants imports torch, which would make every `avaffect --help` slow; an unknown
    # name is answered by the variant registry with the list of known ones
    p = sub.add_parser("convert-official", help="convert an authors' released checkpoint to our format")
    p.add_argument("checkpoint", type=Path, help="the authors' .pt/.pth/.tar file")
    p.add_argument("--variant", required=True, help="the authors' model family (e.g. rja_blstm; an unknown name "
                   "lists the known ones)")
    p.add_argument("--out", type=Path, required=True, help="output folder (model.safetensors is written)")
    p.add_argument("--audio-weights", type=Path, help="the authors' fine-tuned spectrogram ResNet-18 (a state dict in "
                   "torchvision's naming): copied beside the model for `avaffect predict`; default: the registered "
                   "ImageNet file")
    p.add_argument("--video-weights", type=Path, help="the authors' fine-tuned R3D-18 (torchvision's naming): copied "
                   "beside the model; default: the registered Kinetics-400 file")
    p.add_argument("--hop", type=int, help="clips between the model's L-clip windows at prediction time (default L: "
                   "non-overlapping sub-sequences)")
    p.set_defaults(func=cmd_convert_official)


def cmd_export(args) -> int:
    from avaffect.models.export import export_onnx

    if args.format != "onnx":
        raise AvaffectError(f"--format {args.format}: only onnx is written")
    if args.out is not None and len(args.checkpoints) != 1:
        raise AvaffectError("--out takes one checkpoint: export them one by one into their own folders")
    for checkpoint in args.checkpoints:
        path = export_onnx(checkpoint, args.out)
        record = json.loads(path.with_name(path.name + ".json").read_text())
        print(f"wrote {path} and {path.name}.json (max |ONNX - torch| {record['max_abs_diff']:.2g} on the check "
              "windows, refused above 1e-4)")
        if args.out is not None:
            networks = json.loads((args.out / "preprocessing.json").read_text())["extractors"]
            torch_left = False
            for modality, note in networks.items():
                if note["exported"]:
                    print(f"  {modality} extractor {note['extractor']}: its network exported to {note['exported']} "
                          f"(max |ONNX - torch| {note['max_abs_diff']:.2g})")
                elif not note["network"]:
                    print(f"  {modality} extractor {note['extractor']}: not a network, runs as it is")
                else:
                    torch_left = True
                    print(f"  {modality} extractor {note['extractor']}: NOT exported ({note['why']}); predict runs it "
                          "with torch and its weights")
            how = " (and torch for that extractor)" if torch_left else ", without torch"
            print(f"  with {args.out / 'deploy.safetensors'} and preprocessing.json: `avaffect predict {args.out} "
                  f"VIDEO` runs it with ONNX Runtime{how}")
        else:
            print("  predict runs it with ONNX Runtime, without importing torch")
    return 0


def register_export(sub) -> None:
    p = sub.add_parser("export", help="write a checkpoint's ONNX export beside it (model.onnx), so that predict "
                       "runs without torch (train writes it at the end of every run)")
    p.add_argument("checkpoints", type=Path, nargs="+", metavar="CHECKPOINT", help="model.safetensors of a run")
    p.add_argument("--format", default="onnx", choices=["onnx"], help="the export's format (ONNX; every preset "
                   "exports, see the README)")
    p.add_argument("--out", type=Path, help="write the export into this folder with what predict needs besides "
                   "(deploy.safetensors: the metadata and the audio features' training mean; preprocessing.json: "
                   "the inputs spelled out), instead of beside the checkpoint; `predict DIR VIDEO` runs it")
    p.set_defaults(func=cmd_export)
