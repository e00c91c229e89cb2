"""The training progress bar on a terminal: log lines printed with ``console.log_line`` appear above the
bar, each on a line of its own, instead of being written onto the bar's line."""

import os
import pty
import re
import select
import subprocess
import sys
import textwrap
import time

import pytest

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="needs a POSIX pseudo-terminal")

CHILD = textwrap.dedent("""
    import torch
    from torch import nn
    from rightreasons.console import log_line
    from rightreasons.data import DataSplits, ExplanationDataset
    from rightreasons.methods import create_method
    from rightreasons.train import TrainConfig, fit

    torch.set_num_threads(1)
    g = torch.Generator().manual_seed(0)

    def split(n):
        x = torch.rand(n, 1, 4, 4, generator=g)
        return ExplanationDataset(x, (x.mean((1, 2, 3)) > 0.5).long(), num_classes=2, name="tiny")

    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(16, 4), nn.ReLU(), nn.Linear(4, 2))
    config = TrainConfig(method="erm", epochs=3, batch_size=8)
    fit(model, create_method("erm"), DataSplits(split(64), split(16), split(16)), config, log=log_line, progress=True)
    log_line("done")
""")

#: ANSI control sequences (CSI and OSC) and other escapes, which move the cursor or style text but print nothing
ESCAPE = re.compile(r"\x1b\[[0-?]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)|\x1b[@-Z\\-_]")


def run_on_a_terminal(code: str, timeout: float = 60.0) -> str:
    """Run ``python -c code`` with stdin, stdout and stderr on a pseudo-terminal; return all it wrote."""
    master, slave = pty.openpty()
    env = {**os.environ, "TERM": "xterm-256color", "COLUMNS": "100", "LINES": "30"}
    for name in ("NO_COLOR", "FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CI"):
        env.pop(name, None)
    proc = subprocess.Popen([sys.executable, "-c", code], stdin=slave, stdout=slave, stderr=slave, env=env,
                            close_fds=True)
    os.close(slave)
    chunks, deadline = [], time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            if not select.select([master], [], [], 0.5)[0]:
                if proc.poll() is not None:
                    break
                continue
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO: the child closed its side
                break
            if not data:
                break
            chunks.append(data)
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)
    out = b"".join(chunks).decode("utf-8", "replace")
    assert proc.returncode == 0, out
    return out


def text_before_on_its_line(out: str, at: int) -> str:
    """What is visible on the terminal line to the left of position ``at`` of the raw output ``out``."""
    line = out[:at].rsplit("\n", 1)[-1].rsplit("\r", 1)[-1]
    return ESCAPE.sub("", line)


def test_epoch_lines_are_printed_above_the_bar_each_on_its_own_line():
    out = run_on_a_terminal(CHILD)
    starts = [m.start() for m in re.finditer(r"epoch \d/3", out)]
    assert [out[s:s + 9] for s in starts] == ["epoch 1/3", "epoch 2/3", "epoch 3/3"], out
    assert "training" in out[:starts[0]], f"no progress bar was drawn:\n{out!r}"
    for s, after in zip(starts, starts[1:] + [out.index("done", starts[-1])]):
        assert text_before_on_its_line(out, s) == "", f"{out[s:s + 9]!r} does not start a line:\n{out!r}"
        assert "training" in out[s:after], f"the bar was not redrawn below {out[s:s + 9]!r}:\n{out!r}"
