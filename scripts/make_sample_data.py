"""Build the built-in sample dataset from real images that packages install.

    python scripts/make_sample_data.py data/sample
"""

import argparse
import json

from dedupkit.samples import build_sample_dataset

if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("destination", help="folder to create")
    parser.add_argument("--originals", type=int, default=60, help="how many distinct real images to use")
    args = parser.parse_args()
    planted = build_sample_dataset(args.destination, args.originals)
    print(json.dumps({k: len(v) for k, v in planted.items()}))
