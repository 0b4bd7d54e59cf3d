"""Peak memory of the bot serving with 100,000 tickets stored.

    python bench/rss.py [--tickets 100000]

Stores the tickets (bulk inserts, SQLite file), starts `complaintbot serve` on
it with the robot configured, sends it a few hundred callbacks (/list in every
dealer group, /show and /respond on tickets across the range), lets one sweep
and outbox round pass, and reads the process's VmHWM from /proc. Prints
`rss_peak_<n>_tickets_mb <value> MB`. Target (issue 7): under 250 MB.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.callbacks import EXE, ROBOT_KEY, ROBOT_TOKEN, free_port, prepare, wait_ready
from bench.fill import DEALERS, HANDLER
from bot.wecom.crypto import CallbackCipher


def peak_rss_mb(pid: int) -> float:
    """VmHWM of the process: its peak resident set, in MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmHWM in /proc status")


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
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite://{tmp}/bench.sqlite3"
        await prepare(url, args.tickets)
        port = free_port()
        env = {**os.environ, "DATABASE_URL": url, "HTTP_PORT": str(port),
               "WECOM_ROBOT_TOKEN": ROBOT_TOKEN, "WECOM_ROBOT_AES_KEY": ROBOT_KEY,
               "LOG_FORMAT": "json", "LOG_LEVEL": "WARNING"}
        bot = await asyncio.create_subprocess_exec(str(EXE), "serve", env=env,
                                                   stdout=asyncio.subprocess.DEVNULL)
        try:
            await wait_ready(port)
            await exercise(port, args.tickets)
            await asyncio.sleep(12)  # a sweep and an outbox round run meanwhile
            print(f"rss_peak_{args.tickets}_tickets_mb {peak_rss_mb(bot.pid):.0f} MB",
                  flush=True)
        finally:
            bot.terminate()
            await bot.wait()


if __name__ == "__main__":
    asyncio.run(main())
