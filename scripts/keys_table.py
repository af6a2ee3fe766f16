"""Writes a random CSV table for comparing key discovery, the same for the
same seed: columns of few to many distinct values (so that keys need
several columns), empty fields, one column derived from two others, and a
few repeated values across columns.

Usage: keys_table.py FILE ROWS SEED
"""

import csv
import random
import sys


def main():
    path, rows, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    rng = random.Random(seed)
    sizes = [2, 3, 5, 8, 13, 30, 70, 150, 400, 1500, 6000]
    rng.shuffle(sizes)
    empty_rate = [rng.choice([0.0, 0.0, 0.02, 0.2]) for _ in sizes]
    names = [f"c{i}" for i in range(len(sizes))] + ["derived"]
    with open(path, "w", newline="") as f:
        out = csv.writer(f, lineterminator="\n")
        out.writerow(names)
        for _ in range(rows):
            row = [
                "" if rng.random() < empty_rate[i] else f"v{rng.randrange(size)}"
                for i, size in enumerate(sizes)
            ]
            # A function of two columns: no key needs both it and them.
            row.append(f"{row[0]}|{row[1]}" if rng.random() < 0.9 else "x")
            out.writerow(row)


if __name__ == "__main__":
    main()
