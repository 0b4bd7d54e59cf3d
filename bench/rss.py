"""Peak memory of the bot serving with 100,000 tickets stored, through a
monthly report run.

    python bench/rss.py [--tickets 100000]

After the calibration line: stores the tickets (bulk inserts, SQLite file),
all dispatched in the month whose report is due, over the example dealers,
starts `complaintbot serve` on it with the robot configured, sends it a few
hundred callbacks (/list in every dealer group, /show and /respond on
tickets across the range), lets a sweep pass, then lets its start-up
catch-up run the monthly reports (the brand's workbook lists all the
tickets). Reads from /proc the server's memory when idle and its peak
(VmHWM), and the report renderer process's peak, each printed with its ratio
to the server's idle memory. Targets (issue 16): the server under 250 MB;
the renderer bounded (the workbook streams to its file).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.calibration import calibration_line
from bench.callbacks import EXE, ROBOT_KEY, ROBOT_TOKEN, free_port, wait_ready
from bench.fill import DEALERS, HANDLER
from bench.report import ReportRunSeen, fill, line, proc_memory, server_env, watch_report_run
from bot.wecom.crypto import CallbackCipher


async def exercise(port: int, count: int) -> None:
    """Callbacks touching the whole range of tickets."""
    cipher = CallbackCipher(ROBOT_TOKEN, ROBOT_KEY, "")
    texts = [(code, "/list") for code, _ in DEALERS]
    step = max(1, count // 200)
    texts += [(DEALERS[n % 4][0], f"/show {n}") for n in range(1, count + 1, step)]
    texts += [(DEALERS[n % 4][0], f"/respond {n}") for n in range(1, count + 1, 2 * step)
              if n % 2]
    async with aiohttp.ClientSession() as session:
        for i, (dealer, text) in enumerate(texts):
            message = {"msgid": f"rss-{i}", "aibotid": "aibench", "chattype": "group",
                       "chatid": f"wrGRP-{dealer}", "from": {"userid": HANDLER[dealer]},
                       "response_url": "http://127.0.0.1:9/r", "msgtype": "text",
                       "text": {"content": f"@投诉助手 {text}"}}
            query, body = cipher.robot_callback(message, timestamp=str(int(time.time())))
            async with session.post(f"http://127.0.0.1:{port}/wecom/robot",
                                    params=query.as_params(), data=body) as resp:
                assert resp.status == 200, await resp.text()


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tickets", type=int, default=100_000)
    args = parser.parse_args()
    calibration_line()
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite://{tmp}/bench.sqlite3"
        network = await fill(url, dealers=0, regions=0, tickets=args.tickets, callbacks=0,
                             now=datetime.now(UTC))
        port = free_port()
        bot = await asyncio.create_subprocess_exec(
            str(EXE), "serve", env=server_env(url, port, catchup_seconds=20),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL)
        seen = ReportRunSeen()
        try:
            await wait_ready(port)
            seen.server_idle_mb = proc_memory(bot.pid)["VmRSS"]
            await exercise(port, args.tickets)
            await asyncio.sleep(6)  # a sweep runs meanwhile
            await watch_report_run(url, bot.pid, network.reports, seen, asyncio.Event())
        finally:
            bot.terminate()
            await bot.wait()
    labels = f"tickets={args.tickets} backend=sqlite"
    line(f"server_rss_idle_mb {labels}", seen.server_idle_mb, "MB", fmt=".0f")
    line(f"server_rss_peak_mb {labels} (callbacks, sweep, monthly reports)",
         seen.server_peak_mb, "MB", baseline=seen.server_idle_mb, fmt=".0f")
    line(f"renderer_rss_peak_mb {labels}", seen.renderer_peak_mb, "MB",
         baseline=seen.server_idle_mb, fmt=".0f")
    line(f"report_monthly_run_seconds {labels} reports={seen.stored}", seen.seconds, "s")


if __name__ == "__main__":
    asyncio.run(main())
