# The reference for ingest+validation speed: Python's json module over the same JSONL file, checking what our
# validator checks for an Alpaca record (an object, instruction and output non-empty strings, input a string).
import json
import sys
import time

path = sys.argv[1]
start = time.perf_counter()
accepted = errors = 0
size = 0
with open(path, "rb") as f:
    for line in f:
        size += len(line)
        try:
            record = json.loads(line)
        except ValueError:
            errors += 1
            continue
        if (isinstance(record, dict)
                and isinstance(record.get("instruction"), str) and record["instruction"].strip()
                and isinstance(record.get("output"), str) and record["output"].strip()
                and isinstance(record.get("input", ""), str)):
            accepted += 1
        else:
            errors += 1
elapsed = time.perf_counter() - start
print(json.dumps({"seconds": elapsed, "bytes": size, "accepted": accepted, "errors": errors}))
