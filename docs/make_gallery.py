"""Build the README's gallery: each content photo, then the photo in every shipped style.

    python docs/make_gallery.py PHOTO [PHOTO ...] -o docs/gallery.jpg [--height 256] [--styles a,b]
"""

from __future__ import annotations

import argparse
import sys

import cv2

from fastnst.images import contact_sheet, read_image, write_image
from fastnst.pipeline import Stylizer
from fastnst.styles import list_styles


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("photos", nargs="+")
    ap.add_argument("-o", "--output", required=True)
    ap.add_argument("--height", type=int, default=256, help="row height in px (the net runs at this size)")
    ap.add_argument("--styles", default=None, help="comma-separated style names (default: all shipped)")
    args = ap.parse_args(argv)

    names = args.styles.split(",") if args.styles else list(list_styles())
    stylizers = {n: Stylizer(n, device="cpu") for n in names}
    tiles, labels = [], []
    for path in args.photos:
        img = read_image(path)
        w = round(img.shape[1] * args.height / img.shape[0])
        img = cv2.resize(img, (w, args.height), interpolation=cv2.INTER_AREA)
        tiles.append(img)
        labels.append("content")
        for n, s in stylizers.items():
            tiles.append(s(img))
            labels.append(n)
    write_image(args.output, contact_sheet(tiles, columns=len(names) + 1, labels=labels))
    print(f"wrote {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
