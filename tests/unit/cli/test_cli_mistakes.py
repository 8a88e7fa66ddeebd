"""A person's mistakes with `dxtalent`: one line on stderr saying what to do, exit 1, no
traceback. Servers that are down are closed ports on 127.0.0.1; nothing else is contacted."""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
from typer.testing import CliRunner, Result

from dxtalent.cli import app
from dxtalent_infra.servers import free_port

COURSE_COMPLETED = "dxtalent.lms.CourseCompleted.v1"


def _run(*args: str, env: dict[str, str] | None = None) -> Result:
    """The CLI in-process, with none of this process's DXT_ variables."""
    unset: dict[str, str | None] = {k: None for k in os.environ if k.startswith("DXT_")}
    return CliRunner().invoke(app, list(args), env=unset | dict(env or {}))


def _one_error_line(result: Result) -> str:
    """The run failed with exit 1 and said why in exactly one line on stderr."""
    assert result.exit_code == 1, (result.exit_code, result.output, result.exception)
    assert isinstance(result.exception, SystemExit), result.exception
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("error: ")
    return lines[0]


def _fact(event_id: str, **data: str) -> str:
    doc = {
        "specversion": "1.0",
        "type": COURSE_COMPLETED,
        "id": event_id,
        "source": "urn:test",
        "data": data,
    }
    return json.dumps(doc)


@pytest.fixture(autouse=True)
def _in_empty_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """No `.dxtalent/stack.json` of a running system is found."""
    monkeypatch.chdir(tmp_path)


def test_publishing_a_missing_file_says_so() -> None:
    """Given no such file, publish names it and asks for a path."""
    line = _one_error_line(_run("publish", "missing.jsonl", "--dry-run"))
    assert line == (
        "error: missing.jsonl: no such file; give the path of the facts file, or - for stdin"
    )


def test_a_fiscal_year_out_of_range_is_refused_before_asking_the_service() -> None:
    """Given FY2018 (before 令和), progress says which years exist; no service is asked."""
    closed = f"http://127.0.0.1:{free_port()}"
    line = _one_error_line(_run("progress", "--fiscal-year", "2018", "--url", closed))
    assert line == (
        "error: fiscal year 2018 is out of range: give a year from 2019 (令和元年度) to 2100, "
        "by its starting year, e.g. --fiscal-year 2025"
    )


def test_progress_with_the_reporting_service_down_says_how_to_start_it() -> None:
    """Given a closed port as the reporting URL, progress says nothing answers there."""
    closed = f"http://127.0.0.1:{free_port()}"
    line = _one_error_line(_run("progress", "--fiscal-year", "2025", "--url", closed))
    assert line.startswith(f"error: no reporting service answers at {closed} (")
    assert line.endswith(
        "start the system with `dxtalent up`, or pass --url of a running reporting service"
    )


@pytest.mark.parametrize("command", [["dlq", "list"], ["dlq", "redrive"]])
def test_dlq_commands_with_nats_down_say_how_to_reach_it(command: list[str]) -> None:
    """Given DXT_NATS_URL at a closed port, dlq list / redrive say NATS cannot be reached."""
    url = f"nats://127.0.0.1:{free_port()}"
    line = _one_error_line(_run(*command, env={"DXT_NATS_URL": url}))
    assert line.startswith(f"error: cannot connect to NATS at {url} (")
    assert "start the system with `dxtalent up`, or set DXT_NATS_URL" in line


def test_publish_with_nats_down_says_how_to_reach_it(tmp_path: Path) -> None:
    """Given good facts and NATS at a closed port, publish checks them, then says NATS is down."""
    facts = tmp_path / "facts.csv"
    facts.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    url = f"nats://127.0.0.1:{free_port()}"
    line = _one_error_line(_run("publish", str(facts), env={"DXT_NATS_URL": url}))
    assert line.startswith(f"error: cannot connect to NATS at {url} (")


def test_publish_with_every_server_of_a_cluster_down_names_them(tmp_path: Path) -> None:
    """Given DXT_NATS_URL listing three closed ports (a cluster that is down), publish tries
    each and says none answers, naming the list."""
    facts = tmp_path / "facts.csv"
    facts.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    url = ",".join(f"nats://127.0.0.1:{free_port()}" for _ in range(3))
    line = _one_error_line(_run("publish", str(facts), env={"DXT_NATS_URL": url}))
    assert line.startswith(f"error: cannot connect to NATS at {url} (")


def test_publish_without_any_nats_configured_says_to_start_one(tmp_path: Path) -> None:
    """Given no DXT_NATS_URL and no running `dxtalent up`, publish says where NATS comes from."""
    facts = tmp_path / "facts.csv"
    facts.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    line = _one_error_line(_run("publish", str(facts)))
    assert line == "error: no NATS server: set DXT_NATS_URL, or start the system with `dxtalent up`"


def test_a_fact_without_its_required_fields_is_rejected_and_the_exit_is_non_zero(
    tmp_path: Path,
) -> None:
    """Given a CourseCompleted with empty data, --dry-run rejects it with the missing fields
    (enrollment's reason), counts it, sends nothing and exits 1."""
    facts = tmp_path / "facts.jsonl"
    facts.write_text(_fact("f-1") + "\n")
    result = _run("publish", str(facts), "--dry-run")
    assert result.exit_code == 1
    rejected, summary = result.stderr.strip().splitlines()
    assert rejected.startswith(f"rejected line 1: Event '{COURSE_COMPLETED}' 'f-1' is not valid:")
    assert "data.employee_id: Field required" in rejected
    assert summary.startswith("error: 1 rejected; fix them and publish the file again")
    assert result.stdout.strip() == "0 accepted, 1 rejected; dry run: nothing sent"


def test_a_csv_whose_every_row_is_rejected_exits_non_zero(tmp_path: Path) -> None:
    """Given an unknown course (catalog) and an impossible date (reading), each row is
    reported with its line number and reason, and the exit is 1."""
    facts = tmp_path / "facts.csv"
    facts.write_text(
        "employee_id,course_id,completed_on\nE1,NOPE-1,2025-06-01\nE2,DX-101,2025-02-30\n"
    )
    result = _run("publish", str(facts), "--dry-run")
    assert result.exit_code == 1
    first, second, summary = result.stderr.strip().splitlines()
    assert first.startswith("rejected row 2: ")
    assert "data.course_id: unknown course 'NOPE-1': not in the catalog" in first
    assert second == (
        "rejected row 3: completed_on '2025-02-30' is not a calendar date: "
        "day is out of range for month"
    )
    assert summary.startswith("error: 2 rejected;")


def test_a_dry_run_of_good_facts_needs_no_server_and_exits_zero(tmp_path: Path) -> None:
    """Given acceptable facts and no NATS anywhere, --dry-run accepts them and sends nothing."""
    facts = tmp_path / "facts.jsonl"
    good = _fact("f-2", employee_id="E1", course_id="DX-101", completed_on="2025-06-01")
    facts.write_text(good + "\n\n" + good.replace("f-2", "f-3") + "\n")
    result = _run("publish", str(facts), "--dry-run")
    assert result.exit_code == 0, result.output
    assert result.stdout.strip() == "2 accepted, 0 rejected; dry run: nothing sent"
    assert result.stderr == ""


def test_a_malformed_catalog_is_one_line_naming_the_file_and_line(tmp_path: Path) -> None:
    """Given DXT_CATALOG with broken YAML, publish names the file and line and the way out."""
    catalog = tmp_path / "city.yaml"
    catalog.write_text("plan:\n  name: [unclosed\n")
    facts = tmp_path / "facts.csv"
    facts.write_text("employee_id,course_id,completed_on\nE1,DX-101,2025-06-01\n")
    line = _one_error_line(
        _run("publish", str(facts), "--dry-run", env={"DXT_CATALOG": str(catalog)})
    )
    assert line.startswith(f"error: catalog {catalog}:")
    assert "not valid YAML" in line
    assert line.endswith("fix the file, or unset DXT_CATALOG for the default")


@pytest.mark.parametrize("command", [["up"], ["serve", "enrollment"]])
def test_services_do_not_start_on_a_catalog_that_is_not_there(
    tmp_path: Path, command: list[str]
) -> None:
    """Given DXT_CATALOG naming no file, up and serve stop before starting anything."""
    env = {
        "DXT_CATALOG": str(tmp_path / "none.yaml"),
        "DXT_NATS_URL": f"nats://127.0.0.1:{free_port()}",
        "DXT_DATABASE_URL": f"postgresql://x@127.0.0.1:{free_port()}/x",
    }
    line = _one_error_line(_run(*command, env=env))
    assert line == (
        f"error: catalog {tmp_path / 'none.yaml'}: cannot read catalog: No such file or "
        "directory; fix the file, or unset DXT_CATALOG for the default"
    )


@pytest.mark.parametrize(
    ("variable", "value", "rule"),
    [
        ("DXT_MAX_DELIVER", "0", "Input should be greater than or equal to 1"),
        (
            "DXT_LOG_LEVEL",
            "verbose",
            "Input should be 'debug', 'info', 'warning', 'error' or 'critical'",
        ),
        (
            "DXT_NATS_URL",
            "nats://127.0.0.1:4222,http://127.0.0.1:4223",
            "Value error, 'http://127.0.0.1:4223' is not a NATS URL; write nats://HOST:PORT "
            "(tls://HOST:PORT for TLS), several separated by commas for a cluster",
        ),
    ],
)
def test_a_setting_out_of_range_names_the_variable(variable: str, value: str, rule: str) -> None:
    """Given DXT_MAX_DELIVER=0 or an unknown log level, the command names the variable, its
    value and the rule, instead of the value being ignored or a traceback."""
    line = _one_error_line(_run("dlq", "list", env={variable: value}))
    assert line == f"error: bad setting {variable}={value!r}: {rule}; fix or unset it"


def test_an_empty_file_is_not_published() -> None:
    """Given a file with no facts, publish says there is nothing in it."""
    Path("empty.jsonl").write_text("\n\n")
    line = _one_error_line(_run("publish", "empty.jsonl"))
    assert line == "error: empty.jsonl: no facts in it (blank); nothing to publish"


def test_up_with_its_nats_down_says_so_before_starting_anything(tmp_path: Path) -> None:
    """Given DXT_NATS_URL at a closed port, up stops at once naming it (no 120 s wait)."""
    url = f"nats://127.0.0.1:{free_port()}"
    result = _run("up", "--data-dir", str(tmp_path), env={"DXT_NATS_URL": url})
    line = _one_error_line(result)
    assert line.startswith(f"error: cannot connect to NATS at {url} (")
    assert line.endswith("start it, fix DXT_NATS_URL, or unset it for an embedded server")
    assert not (tmp_path / "logs").exists()


def test_up_with_its_postgres_down_says_so_without_the_password(tmp_path: Path) -> None:
    """Given DXT_DATABASE_URL at a closed port, up names the server (password hidden)."""
    port = free_port()
    dsn = f"postgresql://dxt:secret@127.0.0.1:{port}/dxtalent"
    line = _one_error_line(_run("up", "--data-dir", str(tmp_path), env={"DXT_DATABASE_URL": dsn}))
    assert line.startswith(
        f"error: cannot connect to PostgreSQL at postgresql://dxt:***@127.0.0.1:{port}/dxtalent ("
    )
    assert "secret" not in line


def test_up_with_a_data_directory_it_cannot_make_says_so(tmp_path: Path) -> None:
    """Given --data-dir under a regular file, up says it cannot use it."""
    afile = tmp_path / "afile"
    afile.write_text("")
    line = _one_error_line(_run("up", "--data-dir", str(afile / "data")))
    assert line == (
        f"error: cannot use {afile / 'data'} as the data directory (Not a directory); "
        "pass --data-dir of a directory you can write, or set DXT_DATA_DIR"
    )


def test_up_on_a_port_in_use_says_which(tmp_path: Path) -> None:
    """Given something listening on the enrollment port, up names the port and the way out."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = _run("up", "--data-dir", str(tmp_path), "--port-base", str(port))
    assert _one_error_line(result) == (
        f"error: port {port} already in use (another dxtalent?); stop it, or pass another "
        "--port-base"
    )


def test_serve_on_a_port_in_use_says_which() -> None:
    """Given DXT_HTTP_PORT taken by another listener, serve names it before connecting."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        env = {
            "DXT_NATS_URL": f"nats://127.0.0.1:{free_port()}",
            "DXT_DATABASE_URL": f"postgresql://x@127.0.0.1:{free_port()}/x",
            "DXT_HTTP_PORT": str(port),
        }
        result = _run("serve", "reporting", env=env)
    assert _one_error_line(result) == (
        f"error: port {port} already in use (another dxtalent?); set DXT_HTTP_PORT to a free port"
    )


def test_a_corrupt_stack_file_says_to_delete_it() -> None:
    """Given a `.dxtalent/stack.json` that is not JSON, dlq list says to delete it."""
    Path(".dxtalent").mkdir()
    Path(".dxtalent/stack.json").write_text("{")
    line = _one_error_line(_run("dlq", "list"))
    assert line.startswith("error: .dxtalent/stack.json cannot be read (")
    assert line.endswith("delete it, `dxtalent up` writes it again")


def test_verify_a_missing_credential_file_is_one_line(tmp_path: Path) -> None:
    """`credential verify` of a file that is not there: one line naming it, exit 1."""
    result = _run("credential", "verify", str(tmp_path / "none.jwt"))
    assert _one_error_line(result) == (
        f"error: {tmp_path}/none.jwt: cannot read the credential: No such file or directory"
    )


def test_verify_a_file_that_is_not_a_jwt_is_one_line(tmp_path: Path) -> None:
    """`credential verify` of a file without a VC-JWT says so in one line, exit 1."""
    (tmp_path / "c.json").write_text('{"id": "x"}')
    result = _run("credential", "verify", str(tmp_path / "c.json"))
    assert _one_error_line(result) == (
        f"error: {tmp_path}/c.json: JSON without a 'jwt' member; give the VC-JWT"
    )
