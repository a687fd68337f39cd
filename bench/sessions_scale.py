"""Sessions at scale: do listing, searching and opening a session stay fast with 10,000 sessions and 200,000
messages in the database?

A throwaway PostgreSQL (devtools/servers.py), migrated, then filled with COPY: 20 users in 4 teams, 10,000
sessions owned evenly by them (5 % archived; activity spread over a year), shared as the portal shares them
(15 % to one or two users, 10 % to a team, viewer or collaborator), ~100,000 completed runs and 200,000
messages (a user question and an answer per run; words drawn from a Zipf-distributed vocabulary, so a few words
are in most messages and most words in few). Then a real `manage.py serve` on it, and one user (user00: owner of
~500 sessions, shared ~600 more through their two teams and directly) asks over HTTP with a bearer token,
on a keep-alive connection, each request of every case once per round (rounds interleave the cases, so drift
and neighbours hit them alike):

    list            GET /api/sessions                      (first page of 50, newest activity first)
    list mine       GET /api/sessions?scope=mine
    list shared     GET /api/sessions?scope=shared
    list page 10    GET /api/sessions?cursor=…             (the 10th page: a cursor taken while paging)
    search common   GET /api/sessions?q=<a word in ~2/3 of the messages>
    search prefix   GET /api/sessions?q=<its first 4 letters>
    search rare     GET /api/sessions?q=<a word in 25 messages and 3 titles>
    search none     GET /api/sessions?q=<a word in none>
    open (API)      GET /api/sessions/<id>                 (the snapshot: every message; a random visible session)
    open (page)     GET /sessions/<id>/                    (the portal's session page, logged in by cookie)
    home (info)     GET /                                  (the portal's home page; no target: informational)

Reported per case: n, p50/p95/p99/max (nearest-rank, client-side: request sent → body read), the answer's
size; target p95 ≤ 100 ms for every case but `home`. Then each case alone, back to back: the CPU the server
and PostgreSQL spent per request (what a request costs, whoever else uses the machine). `--nice -10` (root)
runs the server, PostgreSQL and the client ahead of other work on a shared machine. Then `EXPLAIN (ANALYZE,
BUFFERS)` of the search's query (the selector's own queryset, `orchestrator/selectors_sharing.py:
listed_sessions`) for the common and the rare word. `--sqlite` runs the same on SQLite (rows inserted with executemany; search is then a substring match).

    .venv/bin/python bench/sessions_scale.py                    # 200 requests per case (~8 min on 2 busy cores)
    .venv/bin/python bench/sessions_scale.py --quick            # 30 per case, 2,000 sessions / 40,000 messages
    .venv/bin/python bench/sessions_scale.py --sqlite
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import random
import sqlite3
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from common import RESULTS, code_version, fmt, serve_env, summary, table, write_results  # noqa: E402

from devtools.api import KeepAliveClient  # noqa: E402
from devtools.facts import CpuSample, machine_info, memory_mib, process_seconds, tree_seconds  # noqa: E402
from devtools.serve import Serve  # noqa: E402
from devtools.servers import PostgresServer, sandbox_reachable_dir  # noqa: E402

TARGET_P95_MS = 100.0
USERS, TEAMS = 20, 4
ME = "user00"
COMMON, RARE, NONE = "server", "zanzibar", "xylophonic"
RARE_MESSAGES, RARE_TITLES = 25, 3
WORDS = ("the to and server of a in is it you that for on with this as be are can run file error use not "
         "config test build deploy python function data model session user request response database query "
         "index cache token stream worker queue latency memory thread process socket client api schema table "
         "migration branch commit review release docker image container cluster node network proxy timeout "
         "retry log metric trace alert dashboard budget report meeting plan design draft summary email").split()
PAGE_INDEX = 10  # the "later page": the cursor of page 9 asks for the 10th


# --- the data ---------------------------------------------------------------------------------------------------

def vocabulary(rng: random.Random, size: int = 5000) -> tuple[list[str], list[float]]:
    """WORDS, then made-up words, with Zipf weights (1/rank): cumulative weights for random.choices."""
    syllables = ["ka", "lo", "mi", "ren", "tu", "sa", "vel", "dor", "qui", "ban", "pex", "hal", "zor", "nim"]
    words, seen = list(WORDS), set(WORDS) | {RARE, NONE}
    while len(words) < size:
        word = "".join(rng.choice(syllables) for _ in range(rng.randint(2, 4)))
        if word not in seen:
            seen.add(word)
            words.append(word)
    total, cumulative = 0.0, []
    for rank in range(1, size + 1):
        total += 1.0 / rank
        cumulative.append(total)
    return words, cumulative


def generate(rng: random.Random, sessions_n: int, messages_n: int) -> dict[str, list[tuple]]:
    """Every table's rows (native Python values), in foreign-key order."""
    words, cumulative = vocabulary(rng)
    text = lambda n: " ".join(rng.choices(words, cum_weights=cumulative, k=n))  # noqa: E731
    now = datetime.datetime.now(datetime.UTC)
    rows: dict[str, list[tuple]] = {name: [] for name in
                                    ("user", "group", "user_groups", "session", "member", "run", "message")}
    for u in range(1, USERS + 1):
        joined = now - datetime.timedelta(days=400)
        rows["user"].append((u, "!", False, f"user{u - 1:02d}", "", "", "", False, True, joined))
    for t in range(1, TEAMS + 1):
        rows["group"].append((t, f"team{t - 1}"))
    memberships = [(u, (u - 1) % TEAMS + 1) for u in range(1, USERS + 1)]  # everyone in one team,
    memberships += [(u, u % TEAMS + 1) for u in range(1, TEAMS + 1)]  # the first four in a second one
    rows["user_groups"] = [(i, u, t) for i, (u, t) in enumerate(memberships, 1)]
    per_session = [2 * rng.randint(1, 19) for _ in range(sessions_n)]  # even: a question and an answer per run
    scale = messages_n / sum(per_session)
    per_session = [max(2, 2 * round(n * scale / 2)) for n in per_session]
    per_session[-1] += messages_n - sum(per_session)  # exactly messages_n (the last session takes the rounding)
    rare_messages = set(rng.sample(range(messages_n), RARE_MESSAGES))
    rare_titles = set(rng.sample(range(sessions_n), RARE_TITLES))
    message_index = 0
    for s in range(sessions_n):
        sid, owner = uuid.UUID(int=rng.getrandbits(128), version=4), s % USERS + 1
        started = now - datetime.timedelta(seconds=rng.uniform(3600, 365 * 86400))
        title = text(rng.randint(2, 6)).capitalize() + (f" {RARE}" if s in rare_titles else "")
        stamp = started
        for _turn in range(per_session[s] // 2):
            rid = uuid.UUID(int=rng.getrandbits(128), version=4)
            stamp += datetime.timedelta(seconds=rng.uniform(5, 600))
            finished = stamp + datetime.timedelta(seconds=rng.uniform(1, 60))
            rows["run"].append((rid, sid, "completed", "tearing_down", "completed", 1, 20, "", "scripted", owner,
                                stamp, stamp, finished, "", "", "", "", 0, 10, 50, True))
            for role, at in (("user", stamp), ("assistant", finished)):
                body = text(rng.randint(5, 30) if role == "user" else rng.randint(20, 120))
                if message_index in rare_messages:
                    body += f" {RARE}"
                rows["message"].append((sid, rid, role, body, "complete", owner if role == "user" else None,
                                        True, at, at))
                message_index += 1
            stamp = finished
        archived = stamp if rng.random() < 0.05 else None
        rows["session"].append((sid, owner, title, False, "", started, stamp, archived))
        grantees = rng.sample([u for u in range(1, USERS + 1) if u != owner], 2)
        if rng.random() < 0.15:
            for u in grantees[: rng.randint(1, 2)]:
                rows["member"].append((sid, u, None, rng.choice(("viewer", "collaborator")), started))
        if rng.random() < 0.10:
            rows["member"].append((sid, None, rng.randint(1, TEAMS), rng.choice(("viewer", "collaborator")), started))
    rows["message"].sort(key=lambda row: row[7])  # ids in order of creation, as the engine writes them
    return rows


COLUMNS = {
    "user": ("auth_user", "id, password, is_superuser, username, first_name, last_name, email, is_staff, "
                          "is_active, date_joined"),
    "group": ("auth_group", "id, name"),
    "user_groups": ("auth_user_groups", "id, user_id, group_id"),
    "session": ("orchestrator_session", "id, owner_id, title, title_chosen, model, created_at, updated_at, "
                                        "archived_at"),
    "member": ("orchestrator_sessionmember", "session_id, user_id, group_id, role, created_at"),
    "run": ("orchestrator_run", "id, session_id, state, prev_state, outcome, turn_count, max_turns, error, model, "
                                "started_by_id, created_at, started_at, finished_at, stop_reason, "
                                "stop_prior_state, executor_id, lease_channel, resume_count, input_tokens, "
                                "output_tokens, usage_estimated"),
    "message": ("orchestrator_message", "session_id, run_id, role, text, status, author_id, usage_estimated, "
                                        "created_at, updated_at"),
}


def load_postgres(url: str, rows: dict[str, list[tuple]]) -> None:
    import psycopg

    with psycopg.connect(url) as connection:
        with connection.cursor() as cursor:
            for name, (table_name, columns) in COLUMNS.items():
                with cursor.copy(f"COPY {table_name} ({columns}) FROM STDIN") as copy:
                    for row in rows[name]:
                        copy.write_row(row)
            for table_name in ("auth_user", "auth_group", "auth_user_groups"):
                cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table_name}', 'id'), "
                               f"(SELECT max(id) FROM {table_name}))")
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute("VACUUM ANALYZE")


def _sqlite_value(value):
    if isinstance(value, uuid.UUID):
        return value.hex  # Django's UUIDField on SQLite: 32 hex digits
    if isinstance(value, datetime.datetime):
        return value.astimezone(datetime.UTC).replace(tzinfo=None).isoformat(" ")
    return value


def load_sqlite(path: Path, rows: dict[str, list[tuple]]) -> None:
    with sqlite3.connect(path) as connection:
        for name, (table_name, columns) in COLUMNS.items():
            marks = ", ".join("?" * len(columns.split(",")))
            connection.executemany(f"INSERT INTO {table_name} ({columns}) VALUES ({marks})",
                                   ([_sqlite_value(v) for v in row] for row in rows[name]))
        connection.execute("ANALYZE")


# --- the measurement ---------------------------------------------------------------------------------------------

EXPLAIN = """
import json
from django.contrib.auth import get_user_model
from django.db import connection
from orchestrator.selectors_sharing import listed_sessions
user = get_user_model().objects.get(username={me!r})
plans = {{}}
for q in {queries!r}:
    sessions = listed_sessions(user=user, q=q)[:51]
    options = {{"analyze": True, "buffers": True}} if connection.vendor == "postgresql" else {{}}
    plans[q] = {{"sql": str(sessions.query), "plan": sessions.explain(**options)}}
print(json.dumps(plans))
"""

VISIBLE = """
import json
from django.contrib.auth import get_user_model
from orchestrator import permissions
user = get_user_model().objects.get(username={me!r})
visible = permissions.visible_sessions(user)
print(json.dumps({{"visible": visible.count(), "mine": visible.filter(owner=user).count(),
                  "sample": [str(pk) for pk in visible.order_by("?").values_list("pk", flat=True)[:200]]}}))
"""


def cases(api: KeepAliveClient, portal: KeepAliveClient, later: tuple[str, int], sample: list[str],
          rng: random.Random) -> dict:
    """name → (client, a function giving the next path, judged against the target)."""
    return {
        "list": (api, lambda: "/api/sessions", True),
        "list mine": (api, lambda: "/api/sessions?scope=mine", True),
        "list shared": (api, lambda: "/api/sessions?scope=shared", True),
        f"list page {later[1]}": (api, lambda: f"/api/sessions?cursor={later[0]}", True),
        "search common": (api, lambda: f"/api/sessions?q={COMMON}", True),
        "search prefix": (api, lambda: f"/api/sessions?q={COMMON[:4]}", True),
        "search rare": (api, lambda: f"/api/sessions?q={RARE}", True),
        "search none": (api, lambda: f"/api/sessions?q={NONE}", True),
        "open (API)": (api, lambda: f"/api/sessions/{rng.choice(sample)}", True),
        "open (page)": (portal, lambda: f"/sessions/{rng.choice(sample)}/", True),
        "home (info)": (portal, lambda: "/", False),
    }


def later_page_cursor(api: KeepAliveClient) -> tuple[str, int]:
    """The cursor of the PAGE_INDEX-th page of the list (or of its last page, when it is shorter), and which."""
    cursor, page_number = None, 1
    while page_number < PAGE_INDEX:
        status, page, _, _ = api.request("GET", "/api/sessions" + (f"?cursor={cursor}" if cursor else ""))
        assert status == 200, (status, page)
        if page["next_cursor"] is None:
            break
        cursor, page_number = page["next_cursor"], page_number + 1
    assert cursor is not None, "the list has a single page"
    return cursor, page_number


def measure(plan: dict, requests: int, warmup: int) -> dict:
    """`warmup` discarded rounds, then `requests` rounds of every case in turn: each case's times (ms) and
    how many of its requests did not answer 200."""
    samples, failures = {name: [] for name in plan}, Counter()
    for round_ in range(warmup + requests):
        for name, (client, path, _judged) in plan.items():
            status, _body, elapsed, _ = client.request("GET", path())
            if status != 200:
                failures[name] += 1
            elif round_ >= warmup:
                samples[name].append(round(elapsed, 3))
    return {"samples": samples, "failures": dict(failures)}


def cpu_per_request(plan: dict, readers: dict, requests: int) -> dict:
    """Each case alone, `requests` times back to back: the CPU milliseconds the server and PostgreSQL spent per
    request. What a request costs whoever else runs on the machine (the latency on an idle one is about this)."""
    costs = {}
    for name, (client, path, _judged) in plan.items():
        before = CpuSample(readers)
        for _ in range(requests):
            client.request("GET", path())
        window = before.until(CpuSample(readers))
        costs[name] = {reader: None if seconds is None else round(seconds / requests * 1000, 2)
                       for reader, seconds in window["seconds"].items()}
    return costs


def renice(pids: list[int], niceness: int) -> None:
    """Give our processes (the server, PostgreSQL's postmaster and backends, this client) priority over the
    rest of a shared machine (root only: a negative niceness)."""
    import psutil

    for pid in pids:
        try:
            process = psutil.Process(pid)
            for each in (process, *process.children(recursive=True)):
                each.nice(niceness)
        except psutil.Error as error:
            print(f"renice {pid}: {error}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=10_000)
    parser.add_argument("--messages", type=int, default=200_000)
    parser.add_argument("--requests", type=int, default=200, help="measured requests per case")
    parser.add_argument("--warmup", type=int, default=5, help="discarded rounds first")
    parser.add_argument("--quick", action="store_true", help="2,000 sessions, 40,000 messages, 30 requests")
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--seed", type=int, default=12)
    parser.add_argument("--json", type=Path, default=None)
    parser.add_argument("--server-log", type=Path, default=None)
    parser.add_argument("--strict", action="store_true", help="exit with status 1 when a target is missed")
    parser.add_argument("--nice", type=int, default=None, metavar="N",
                        help="run the server, PostgreSQL and this client at niceness N (e.g. -10, as root): our "
                             "processes first on a machine shared with other work")
    parser.add_argument("--cost-requests", type=int, default=50, help="requests per case of the CPU-cost pass")
    args = parser.parse_args(argv)
    if args.quick:
        args.sessions, args.messages, args.requests = 2_000, 40_000, 30
    vendor = "sqlite" if args.sqlite else "postgresql"
    json_path = args.json or RESULTS / f"sessions_scale{'_sqlite' if args.sqlite else ''}.json"
    rng = random.Random(args.seed)

    tmpdir = sandbox_reachable_dir("bench-scale-")
    postgres = None if args.sqlite else PostgresServer().start()
    server = None
    try:
        env = serve_env(tmpdir, **({} if postgres is None else {"DATABASE_URL": postgres.url}))
        server = Serve(env, args.server_log or tmpdir / "serve.log")
        server.migrate()
        started = time.monotonic()
        rows = generate(rng, args.sessions, args.messages)
        generated = time.monotonic() - started
        if postgres is None:
            load_sqlite(tmpdir / "bench.sqlite3", rows)
        else:
            load_postgres(postgres.url, rows)
        loaded = time.monotonic() - started - generated
        counts = {name: len(value) for name, value in rows.items()}
        common_share = sum(f" {COMMON} " in f" {m[3]} " for m in rows["message"]) / len(rows["message"])
        del rows
        print(f"{vendor}: {counts['session']:,} sessions, {counts['message']:,} messages, {counts['run']:,} runs, "
              f"{counts['member']:,} grants; generated in {generated:.1f} s, loaded in {loaded:.1f} s; "
              f"'{COMMON}' is in {common_share:.0%} of the messages")

        token = server.create_token(ME)
        cookie = f"sessionid={server.login_cookie(ME)}"
        me = json.loads(server.manage("shell", "-c", VISIBLE.format(me=ME)).strip().splitlines()[-1])
        print(f"{ME} sees {me['visible']:,} sessions ({me['mine']:,} their own)")
        server.start(timeout=60)
        api = KeepAliveClient("127.0.0.1", server.port, token)
        portal = KeepAliveClient("127.0.0.1", server.port, None, cookie=cookie)
        cursor = later_page_cursor(api)
        plan = cases(api, portal, cursor, me["sample"], rng)
        answers = {}
        for name, (client, path, _) in plan.items():  # what each case answers (also: all answer 200)
            status, body, _, _ = client.request("GET", path())
            assert status == 200, f"{name}: HTTP {status} {body}"
            answers[name] = (f"{len(body['sessions'])} sessions" if "sessions" in body
                             else f"{len(body['messages'])} messages" if "messages" in body else "page")
        if args.nice is not None:
            renice([server.pid, os.getpid(), *([postgres.pid] if postgres is not None else [])], args.nice)
        readers = {"server": lambda: process_seconds(server.pid)}
        if postgres is not None:
            readers["postgresql"] = lambda: tree_seconds(postgres.pid)
        before = CpuSample(readers)
        measured = measure(plan, args.requests, args.warmup)
        cpu = before.until(CpuSample(readers))
        costs = cpu_per_request(plan, readers, args.cost_requests)
        plans = json.loads(server.manage("shell", "-c", EXPLAIN.format(me=ME, queries=[COMMON, RARE, NONE]))
                           .strip().splitlines()[-1])
    finally:
        if server is not None:
            server.stop()
        if postgres is not None:
            postgres.stop()

    stats, rows_out, all_pass = {}, [], True
    for name, (_, _, judged) in plan.items():
        stats[name] = s = summary(measured["samples"][name])
        failed = measured["failures"].get(name, 0)
        verdict = "-" if not judged else ("PASS" if s["p95"] is not None and s["p95"] <= TARGET_P95_MS
                                          and not failed else "MISS")
        all_pass &= verdict != "MISS"
        cost = costs[name]
        rows_out.append([name, answers[name], str(s["n"]), fmt(s["p50"]), fmt(s["p95"]), fmt(s["p99"]),
                         fmt(s["max"]), str(failed), verdict, fmt(cost.get("server")), fmt(cost.get("postgresql"))])
    report = table(["case", "answer", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "failed",
                    f"p95 ≤ {TARGET_P95_MS:g} ms", "CPU/req: server ms", "PostgreSQL ms"], rows_out)
    print()
    print(report)
    print(f"\nCPU over the measurement: server {cpu['cores'].get('server')} cores, PostgreSQL "
          f"{cpu['cores'].get('postgresql')} cores, this client {cpu['client_cores']}, other processes "
          f"{cpu['others_cores']} (busy machine: > 0.1)")
    for q in (COMMON, RARE):
        print(f"\nEXPLAIN{' (ANALYZE, BUFFERS)' if postgres is not None else ' QUERY PLAN'} of the search for "
              f"q={q!r} (listed_sessions(...)[:51]):\n{plans[q]['plan']}")
    print("ALL TARGETS PASS" if all_pass else "SOME TARGETS MISSED")
    output = {
        "benchmark": "sessions_scale", "database": vendor, "at": datetime.datetime.now(datetime.UTC).isoformat(),
        "code": code_version(), "machine": machine_info(memory_mib=memory_mib()), "args": vars(args),
        "rows": counts, "common_word": COMMON, "common_word_message_share": round(common_share, 4),
        "rare_word": RARE, "no_hit_word": NONE, "user": ME, "visible_sessions": me["visible"],
        "own_sessions": me["mine"], "target_p95_ms": TARGET_P95_MS, "answers": answers, "stats": stats,
        "samples": measured["samples"], "failures": measured["failures"], "cpu": cpu, "cpu_ms_per_request": costs,
        "nice": args.nice, "explain": plans,
        "table": report, "percentiles": "nearest-rank",
    }
    return write_results(json_path, output, all_pass=all_pass, strict=args.strict)


if __name__ == "__main__":
    sys.exit(main())
