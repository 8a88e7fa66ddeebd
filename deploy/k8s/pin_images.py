"""Pin every image of deploy/k8s by digest (`make k8s-pin-images`), or check that it is.

The manifests name images by logical names (`dxtalent`, `nats`, `nats-box`, `postgresql`);
kustomization.yaml's `images:` maps each to a registry reference. After pushing a release:

    python deploy/k8s/pin_images.py dxtalent=registry.example.internal/dxtalent:0.2.0
    python deploy/k8s/pin_images.py                      # every entry, from its newName:newTag
    python deploy/k8s/pin_images.py nats=docker.io/library/nats@sha256:<digest>   # known digest
    python deploy/k8s/pin_images.py --check              # exit 1 while anything is unpinned

A reference without a digest is resolved to the digest the registry serves for it, with
`skopeo inspect` (or `podman pull` + `podman image inspect` where skopeo is missing). The entry
then carries `digest:` instead of `newTag:` (the tag stays as a comment), so what runs is
exactly what was tested, whatever later happens to the tag. Comments and order are kept.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

KUSTOMIZATION = Path(__file__).resolve().parent / "kustomization.yaml"
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")


def resolve_digest(ref: str) -> str:
    """The digest a registry serves for `ref` (name:tag)."""
    if shutil.which("skopeo"):
        out = subprocess.run(
            ["skopeo", "inspect", "--format", "{{.Digest}}", f"docker://{ref}"],
            capture_output=True, text=True, check=True,
        )  # fmt: skip
        return out.stdout.strip()
    subprocess.run(["podman", "pull", "--quiet", ref], check=True, stdout=subprocess.DEVNULL)
    out = subprocess.run(
        ["podman", "image", "inspect", "--format", "{{.Digest}}", ref],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    return out.stdout.strip()


def split_ref(ref: str) -> tuple[str, str | None, str | None]:
    """name, tag, digest of an image reference (registry ports are not tags)."""
    name, _, digest = ref.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    tag = None
    if colon > slash:
        name, tag = name[:colon], name[colon + 1 :]
    return name, tag, digest or None


def pin(text: str, logical: str, new_name: str, digest: str, tag: str | None) -> str:
    """kustomization.yaml's text with the `images:` entry `logical` pinned to `digest`."""
    if not DIGEST.match(digest):
        raise ValueError(f"{logical}: {digest!r} is not a sha256 digest")
    lines = text.splitlines(keepends=True)
    start = next(
        (
            i
            for i, line in enumerate(lines)
            if re.match(rf"\s*- name: {re.escape(logical)}\s*$", line)
        ),
        None,
    )
    if start is None:
        raise ValueError(f"no images: entry named {logical!r} in kustomization.yaml")
    indent = re.match(r"(\s*)-", lines[start]).group(1) + "  "  # type: ignore[union-attr]
    end = start + 1
    while end < len(lines) and lines[end].startswith(indent):
        end += 1
    note = f"   # tag {tag}" if tag else ""
    entry = [lines[start], f"{indent}newName: {new_name}\n", f"{indent}digest: {digest}{note}\n"]
    return "".join([*lines[:start], *entry, *lines[end:]])


def unpinned(kustomization: dict[str, Any]) -> list[str]:
    """Logical names of `images:` entries without a sha256 digest."""
    return [
        str(image["name"])
        for image in kustomization.get("images", [])
        if not DIGEST.match(str(image.get("digest", "")))
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("pins", nargs="*", metavar="NAME=REF", help="e.g. dxtalent=reg/dxtalent:1")
    parser.add_argument("--check", action="store_true", help="exit 1 if any image is unpinned")
    parser.add_argument("--kustomization", type=Path, default=KUSTOMIZATION)
    args = parser.parse_args(argv)
    text = args.kustomization.read_text()
    if args.check:
        missing = unpinned(yaml.safe_load(text))
        for name in missing:
            sys.stderr.write(f"unpinned image: {name} (run make k8s-pin-images)\n")
        return 1 if missing else 0
    entries = {str(i["name"]): i for i in yaml.safe_load(text).get("images", [])}
    pins = dict(p.split("=", 1) for p in args.pins) or {
        name: f"{e['newName']}:{e['newTag']}" for name, e in entries.items() if "newTag" in e
    }
    for logical, ref in pins.items():
        name, tag, digest = split_ref(ref)
        digest = digest or resolve_digest(ref)
        text = pin(text, logical, name, digest, tag)
        sys.stdout.write(f"{logical}: {name}@{digest}\n")
    args.kustomization.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
