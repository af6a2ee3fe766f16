"""Minimal keys of a CSV file by Desbordante's HPIValid, as JSON on stdout:
{"keys": [[column names]], "seconds": load and search, "cpu_seconds": the
whole process's, "peak_rss_mib": ...}.

Desbordante reads empty fields as null and counts null equal to null, which
matches Sealtrail's default (`nulls: equal`) on CSV, where an empty field is
empty text.

Usage: desbordante_keys.py FILE
"""

import json
import resource
import sys
import time

import desbordante


def main():
    path = sys.argv[1]
    with open(path, newline="") as f:
        columns = f.readline().rstrip("\r\n").split(",")
    start = time.perf_counter()
    algo = desbordante.ucc.algorithms.HPIValid()
    algo.load_data(table=(path, ",", True))
    loaded = time.perf_counter()
    algo.execute()
    done = time.perf_counter()
    keys = sorted(
        ([columns[i] for i in sorted(ucc.indices)] for ucc in algo.get_uccs()),
        key=lambda k: (len(k), [columns.index(c) for c in k]),
    )
    json.dump(
        {
            "keys": keys,
            "seconds": done - start,
            "load_seconds": loaded - start,
            "cpu_seconds": sum(resource.getrusage(resource.RUSAGE_SELF)[:2]),
            "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        },
        sys.stdout,
    )
    print()


if __name__ == "__main__":
    main()
