"""Memory and speed of image folders in memory vs streamed (``folder:PATH`` with ``stream=true``).

Generates a "patches" folder of N PNG images (with masks) once under --root (reused by later runs),
then measures each mode in a fresh subprocess, so that each peak RSS is its own: load + one shuffled
pass over every split's batches in memory, streamed with 0, 1 and 2 workers, and streamed through a
cache (a first pass filling it, then a second run reading it). Prints, per mode, the peak RSS of the
main process, of the largest worker, their total (main + workers x worker: an upper bound, as forked
workers share pages with the main process), images per second over load + pass, and the ratios to
the in-memory path. A baseline row is the interpreter with torch and rightreasons imported.

With ``--train``, one more fresh process trains on the streamed folder (``--train-workers`` workers,
``--train-model``, one epoch of ``--train-method``, then the run's evaluation on validation and test, as
``rightreasons train`` does) and its peak RSS is printed the same way, with the peak proportional set
size (PSS) of its whole process tree (sampled from /proc every 0.2 s: forked workers' shared pages counted
once); ``--train-only`` skips the passes.

    python benchmarks/bench_streaming.py --root /tmp/bench-streaming [--images 20000] [--size 128]
        [--train [--train-only] [--train-model cnn-strided] [--train-method rrr] [--train-workers 2]]
"""

import argparse
import gc
import json
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from rightreasons import load_dataset
from rightreasons.data.examples import write_patches


def folder_for(root: Path, images: int, size: int) -> Path:
    """The generated folder of ``images`` PNGs of ``size`` x ``size`` under ``root`` (made once)."""
    out = root / f"patches-{images}-{size}"
    if not (out / "labels.csv").is_file():
        n_val = n_test = max(2, images * 15 // 100)
        start = time.perf_counter()
        write_patches(out, seed=0, size=size, n_train=images - n_val - n_test, n_val=n_val, n_test=n_test)
        print(f"generated {images} images in {out} ({time.perf_counter() - start:.0f} s)", file=sys.stderr)
    return out


def measure(args) -> dict:
    """One mode in this process: load, one pass over every split (or training, mode "train"); seconds and
    peak RSS (MB)."""
    start = time.perf_counter()
    count = 0
    if args.mode == "train":
        from rightreasons.train import TrainConfig, run_training

        options = {"size": args.size, "stream": True, "workers": args.workers}
        config = TrainConfig(data=f"folder:{args.folder}", data_options=options, model=args.model,
                             method=args.method, epochs=1, batch_size=args.batch_size, device="cpu")
        data = load_dataset(config.data, **options)
        loaded = time.perf_counter()
        run_training(config, data=data)
        count = len(data.train)
        del data
        gc.collect()
    elif args.mode != "baseline":
        options = {"size": args.size}
        if args.mode != "memory":
            options.update(stream=True, workers=args.workers)
        if args.cache:
            options["cache"] = args.cache
        data = load_dataset(f"folder:{args.folder}", **options)
        loaded = time.perf_counter()
        generator = torch.Generator().manual_seed(0)
        for split in ("train", "val", "test"):
            for batch in data.split(split).batches(args.batch_size, shuffle=True, generator=generator):
                count += len(batch)
        del data, batch
        gc.collect()  # shuts the workers down, so that their peak counts in RUSAGE_CHILDREN
    else:
        loaded = start
    end = time.perf_counter()
    kb = 1024 if sys.platform != "darwin" else 1024 * 1024  # ru_maxrss: KiB on Linux, bytes on macOS
    return {"images": count, "load_s": loaded - start, "total_s": end - start,
            "main_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / kb,
            "worker_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / kb}


def _children() -> dict[int, list[int]]:
    """Parent pid -> child pids, from /proc (Linux)."""
    tree: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            tree.setdefault(int(fields[1]), []).append(int(entry.name))
    return tree


def tree_pss_mb(pid: int) -> float:
    """Proportional set size of ``pid`` and all its descendants (shared pages counted once overall), MB."""
    tree, todo, total = _children(), [pid], 0
    while todo:
        p = todo.pop()
        todo.extend(tree.get(p, []))
        try:
            for line in Path(f"/proc/{p}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            pass
    return total / 1024


def run_child(folder: Path, mode: str, workers: int, size: int, batch_size: int, cache: str = "",
              model: str = "cnn-strided", method: str = "rrr") -> dict:
    """The child's measurements, plus the peak PSS of its whole process tree sampled every 0.2 s (Linux)."""
    command = [sys.executable, __file__, "--child", mode, "--folder", str(folder), "--workers", str(workers),
               "--size", str(size), "--batch-size", str(batch_size), "--cache", cache, "--model", model,
               "--method", method]
    child = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    peak = 0.0
    while child.poll() is None:
        if Path("/proc").is_dir():
            peak = max(peak, tree_pss_mb(child.pid))
        time.sleep(0.2)
    out, err = child.communicate()
    if child.returncode:
        raise RuntimeError(f"{mode} run failed:\n{err}")
    result = json.loads(out.strip().splitlines()[-1])
    result["tree_pss_mb"] = peak
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--root", type=Path, help="directory for the generated folder (reused) and the cache")
    parser.add_argument("--images", type=int, default=20_000)
    parser.add_argument("--size", type=int, default=128)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--child", dest="mode", help=argparse.SUPPRESS)
    parser.add_argument("--folder", help=argparse.SUPPRESS)
    parser.add_argument("--workers", type=int, default=0, help=argparse.SUPPRESS)
    parser.add_argument("--cache", default="", help=argparse.SUPPRESS)
    parser.add_argument("--model", default="cnn-strided", help=argparse.SUPPRESS)
    parser.add_argument("--method", default="rrr", help=argparse.SUPPRESS)
    parser.add_argument("--train", action="store_true", help="also train one epoch on the streamed folder")
    parser.add_argument("--train-only", action="store_true", help="only the baseline and the training row")
    parser.add_argument("--train-model", default="cnn-strided")
    parser.add_argument("--train-method", default="rrr")
    parser.add_argument("--train-workers", type=int, default=2)
    args = parser.parse_args()
    if args.mode:
        print(json.dumps(measure(args)))
        return
    if args.root is None:
        parser.error("--root DIR is required (the generated images are kept there)")
    folder = folder_for(args.root, args.images, args.size)
    cache = Path(tempfile.mkdtemp(prefix="cache-", dir=args.root))
    try:
        rows = [("baseline", 0, run_child(folder, "baseline", 0, args.size, args.batch_size))]
        if args.train or args.train_only:
            rows.append((f"train {args.train_method} stream", args.train_workers,
                         run_child(folder, "train", args.train_workers, args.size, args.batch_size,
                                   model=args.train_model, method=args.train_method)))
        if args.train_only:
            for mode, workers, r in rows:
                print(f"{mode:<22} workers {workers}: main {r['main_mb']:.0f} MB, largest worker "
                      f"{r['worker_mb']:.0f} MB, total <= {r['main_mb'] + workers * r['worker_mb']:.0f} MB, "
                      f"peak PSS of the process tree {r['tree_pss_mb']:.0f} MB, {r['total_s']:.0f} s")
            return
        rows.append(("in memory", 0, run_child(folder, "memory", 0, args.size, args.batch_size)))
        for workers in (0, 1, 2):
            rows.append(("stream", workers, run_child(folder, "stream", workers, args.size, args.batch_size)))
        rows.append(("stream, cache fill", 2, run_child(folder, "stream", 2, args.size, args.batch_size, str(cache))))
        for workers in (0, 2):
            rows.append(("stream, cache read", workers,
                         run_child(folder, "stream", workers, args.size, args.batch_size, str(cache))))
    finally:
        shutil.rmtree(cache, ignore_errors=True)
    memory = next(r for mode, _, r in rows if mode == "in memory")
    total = {id(r): r["main_mb"] + workers * r["worker_mb"] for _, workers, r in rows}
    speed = {id(r): r["images"] / r["total_s"] if r["images"] else 0.0 for _, _, r in rows}
    print(f"{args.images} PNG images {args.size}x{args.size} (with masks), batch {args.batch_size}, "
          f"one pass over train+val+test; peak RSS in MB")
    print(f"{'mode':<20} {'workers':>7} {'load s':>7} {'main MB':>8} {'worker MB':>9} {'total MB':>8} "
          f"{'images/s':>9} {'MB ratio':>8} {'speed ratio':>11}")
    for mode, workers, r in rows:
        ratio_mb = total[id(r)] / total[id(memory)]
        ratio_speed = speed[id(r)] / speed[id(memory)] if mode != "baseline" else float("nan")
        print(f"{mode:<20} {workers:>7} {r['load_s']:>7.1f} {r['main_mb']:>8.0f} {r['worker_mb']:>9.0f} "
              f"{total[id(r)]:>8.0f} {speed[id(r)]:>9.0f} {ratio_mb:>8.2f} {ratio_speed:>11.2f}")


if __name__ == "__main__":
    main()
