"""The full rollback's preflight, server side: the live database, the names it will use, the rights to
create and rename databases, and room for a restored copy (a prepared copy needs none: the plan decides)."""

from __future__ import annotations

from dataclasses import dataclass

import readable
from actions.config import Environment
from actions.engine.plan import StepFailed
from actions.postgres import server as pg

DISK_MARGIN = 1.1  # the restored copy may be larger than the live database (rows the migration deleted)


@dataclass(frozen=True)
class ServerCheck:
    version: str
    size: int
    disk: str
    leftover: bool
    disk_problem: str | None = None  # no room for a restored copy: fatal unless a prepared copy is used


async def check_server(env: Environment, live: str, aside: str, keep_as: str) -> ServerCheck:
    try:
        conn = await pg.admin(env)
    except Exception as exc:
        raise StepFailed(f"cannot connect to {env.target} (maintenance database {env.maintenance_db}): "
                         f"{str(exc).splitlines()[0]}") from None
    async with conn:
        if not await pg.database_exists(conn, live):
            raise StepFailed(f"the live database {live} does not exist on {env.target}")
        if await pg.database_exists(conn, keep_as):
            raise StepFailed(f"{keep_as} exists: an earlier run of this incident already swapped the restored copy in, "
                             f"so {live} is the restored database. Start the application and check it, or mark the "
                             "incident resolved; a second full rollback would replace the restored data")
        # The aside copy's name carries this incident's id: one that exists was left by an earlier,
        # interrupted run of this same incident. It never held live data and was never verified,
        # so it is restored again from scratch.
        leftover = await pg.database_exists(conn, aside)
        if not await pg.may_swap(conn, live):
            raise StepFailed(f"the configured role may not create and rename databases: it needs to be superuser, "
                             f"or to have CREATEDB and be a member of {live}'s owner role")
        version = (await pg.scalar(conn, "SHOW server_version")).split(" ")[0]
        size = await pg.scalar(conn, "SELECT pg_database_size(%s)", (live,))
        try:
            disk, disk_problem = await _disk_room(conn, live, size), None
        except StepFailed as no_room:
            disk, disk_problem = "no room for a restored copy", str(no_room)
    return ServerCheck(version, size, disk, leftover, disk_problem)


async def _disk_room(conn, live: str, needed: int) -> str:
    room = await pg.free_space(conn, live)
    if room is None:
        return "disk room not checked (the server's data directory is not on this host, or may not be read)"
    free, where = room
    if free < needed * DISK_MARGIN:
        raise StepFailed(f"not enough disk for a second copy: {readable.size(free)} free in {where}, "
                         f"about {readable.size(needed * DISK_MARGIN)} needed. Free space or add storage, then retry")
    return f"{readable.size(free)} free for the copy"
