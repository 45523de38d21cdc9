"""`python -m tests.fakegram`: the fake Bot API as a server of its own, for a bot in another
process or container (tests/image/smoke.sh points the image's bot at it).

It prints each Bot API method the first time a bot calls it, so whoever reads its output can
tell that the bot started polling (`getUpdates`). With `--start-from USER_ID`, that user sends
`/start` once the bot polls, and the first line of the bot's answer is printed: the bot read
the update, used its database and answered.
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from tests.fakegram import FakeTelegramServer, UserClient, text_of

# How long one wait lasts before it is started again: the server runs until it is stopped.
_WAIT = 3600.0


def _say(line: str) -> None:
    print(f"fakegram: {line}", flush=True)


async def _report_methods(server: FakeTelegramServer) -> None:
    known: set[str] = set()
    reported = 0
    while True:
        try:
            await server.wait_for(lambda seen=reported: len(server.requests) > seen, _WAIT)
        except TimeoutError:
            continue
        for record in server.requests[reported:]:
            if record.method not in known:
                known.add(record.method)
                _say(f"first {record.method}")
        reported = len(server.requests)


async def _send_start(server: FakeTelegramServer, user_id: int) -> None:
    while not server.calls("getUpdates"):  # asked, not yet answered: the bot waits on it
        try:
            await server.wait_for(lambda: server.calls("getUpdates"), _WAIT)
        except TimeoutError:
            continue
    user = UserClient(server, user_id, first_name="Smoke", language_code="en")
    await user.send("/start")
    try:
        answer = await user.wait_message(timeout=60)
    except TimeoutError as exc:
        _say(f"no answer to /start: {exc}")
        return
    _say(f"the bot answered /start: {text_of(answer).splitlines()[0]}")


async def serve(host: str, port: int, start_from: int | None) -> None:
    server = FakeTelegramServer(bot_username="city_bonus_bot")
    await server.start(host, port)
    _say(f"serving the Bot API on {host}:{port}")
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    tasks = [asyncio.create_task(_report_methods(server))]
    if start_from is not None:
        tasks.append(asyncio.create_task(_send_start(server, start_from)))
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    await server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m tests.fakegram", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1", help="default: 127.0.0.1")
    parser.add_argument("--port", type=int, default=8081, help="default: 8081")
    parser.add_argument(
        "--start-from", type=int, metavar="USER_ID", help="a user who sends /start once it polls"
    )
    args = parser.parse_args()
    asyncio.run(serve(args.host, args.port, args.start_from))


if __name__ == "__main__":
    main()
