"""The staff-category counts of `GET /v1/categories`, kept beside the `employees` rows.

`membership_days` / `membership_years` (`dxtalent_infra.membership_counts`) hold, per day and
per fiscal year, how many employees enter or leave each *membership* (the categories of the
record in force, the skills held): `dxtalent_contracts.memberships`, the same pure rules as
reporting's 区分別 page. An employee of this service is a member from `BEGINNING` until
`left_on`: before any record is in force with no category (all-staff only, as
`domain.categories` says), then with the categories of the record in force (tie on a day: the
greatest fact id, as `EmployeeFacts.record_on`), holding the skills of their state acquired
on or before the day.

The handler writes the changes in the transaction that writes the rows: for each employee row
it writes, (memberships after) − (memberships before), from the row it locked and the row it
saves. A fact the row already holds writes no row and so changes no count.

Migration 3 creates the tables and fills them from the rows already there (one statement, the
same timelines in SQL), so an existing schema needs no rebuild.
"""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable

from dxtalent_certification.projection import EmployeeRow
from dxtalent_contracts.fiscal import BEGINNING
from dxtalent_contracts.memberships import Member, MembershipChange, membership_changes
from dxtalent_infra import eventstore
from dxtalent_infra.membership_counts import MEMBERSHIP_PRIVILEGES, MEMBERSHIP_TABLES
from dxtalent_infra.migrations import Migration

#: every employee row's membership timeline, as `member_of` and `membership_changes` make it,
#: summed per day and per fiscal year (JSON arrays of categories and skills are stored sorted,
#: `codec`, so their order is Python's)
FILL_FROM_ROWS = """
WITH per_day AS (
    SELECT e.employee_id, d.day,
        CASE WHEN g.left_on <= d.day THEN NULL ELSE coalesce((
            SELECT coalesce((SELECT string_agg(c, ' ' ORDER BY o)
                FROM jsonb_array_elements_text(r->'categories') WITH ORDINALITY AS x(c, o)), '')
            FROM jsonb_array_elements(e.facts->'records') AS r
            WHERE (r->>'effective_date')::date <= d.day
            ORDER BY (r->>'effective_date')::date DESC, (r->>'id') COLLATE "C" DESC
            LIMIT 1), '') END AS named,
        (SELECT coalesce(string_agg(s->>'skill', ' ' ORDER BY o), '')
            FROM jsonb_array_elements(e.state->'skills') WITH ORDINALITY AS y(s, o)
            WHERE (s->>'acquired_on')::date <= d.day) AS skills
    FROM {schema}.employees AS e
    CROSS JOIN LATERAL (SELECT min((x->>'left_on')::date) AS left_on
        FROM jsonb_array_elements(e.facts->'departures') AS x) AS g
    CROSS JOIN LATERAL (
        SELECT DATE '0001-01-01' AS day
        UNION SELECT (r->>'effective_date')::date FROM jsonb_array_elements(e.facts->'records') r
        UNION SELECT (s->>'acquired_on')::date FROM jsonb_array_elements(e.state->'skills') s
        UNION SELECT g.left_on WHERE g.left_on IS NOT NULL) AS d
), memberships AS (
    SELECT employee_id, day, named, CASE WHEN named IS NOT NULL THEN skills END AS skills
    FROM per_day
), steps AS (
    SELECT day, named, skills,
        lag(named) OVER w AS was_named, lag(skills) OVER w AS was_skills
    FROM memberships WINDOW w AS (PARTITION BY employee_id ORDER BY day)
), changes AS (
    SELECT day, named, skills, 1 AS n FROM steps
    WHERE named IS NOT NULL AND (named, skills) IS DISTINCT FROM (was_named, was_skills)
    UNION ALL
    SELECT day, was_named, was_skills, -1 FROM steps
    WHERE was_named IS NOT NULL AND (named, skills) IS DISTINCT FROM (was_named, was_skills)
), daily AS (
    SELECT day, named, skills, sum(n)::int AS n FROM changes
    GROUP BY day, named, skills HAVING sum(n) <> 0
), filled AS (
    INSERT INTO {schema}.membership_days (day, categories, skills, n) SELECT * FROM daily
)
INSERT INTO {schema}.membership_years (fiscal_year, categories, skills, n)
SELECT CASE WHEN extract(month FROM day) >= 4 THEN extract(year FROM day)
    ELSE extract(year FROM day) - 1 END::int AS fiscal_year, named, skills, sum(n)::int
FROM daily GROUP BY 1, named, skills HAVING sum(n) <> 0;
"""

MIGRATION = Migration(
    3,
    "membership counts of /v1/categories per day and per fiscal year, filled from the rows",
    MEMBERSHIP_TABLES + FILL_FROM_ROWS,
)

#: the service role adds to and updates the count rows, never deletes them
PRIVILEGES = MEMBERSHIP_PRIVILEGES


def member_of(row: EmployeeRow | None) -> Member | None:
    """The employee of `row` as the category counts read them (None: no row yet)."""
    if row is None:
        return None
    facts = row.facts
    latest: dict[dt.date, tuple[str, frozenset[str]]] = {BEGINNING: ("", _NO_CATEGORY)}
    for r in facts.records:
        found = latest.get(r.effective_date)
        if found is None or found[0] < r.fact_id:
            latest[r.effective_date] = (r.fact_id, r.categories)
    departures = facts.departures
    # positional, in field order: twice per written row
    return Member(
        facts.employee_id,
        tuple(sorted([(day, tuple(sorted(c))) for day, (_, c) in latest.items()])),
        min([d.left_on for d in departures]) if departures else None,
        _skills(row),
    )


def _skills(row: EmployeeRow) -> dict[str, dt.date]:
    return {code: held.acquired_on for code, held in row.state.skills.items()}


_NO_CATEGORY: frozenset[str] = frozenset()


def row_changes(
    written: Iterable[tuple[EmployeeRow | None, EmployeeRow]],
) -> Counter[MembershipChange]:
    """What writing each (row before or None, row after) does to the counts, summed.

    A row whose member reads the same before and after (a nomination, a completion granting
    no new skill) changes nothing, and its timelines are not walked: records, departures and
    skills the very objects they were (`decide` keeps an unchanged state), or equal members.
    With the same records and departures (a completion), the member after is the one before
    with the skills after."""
    out: Counter[MembershipChange] = Counter()
    for before, after in written:
        same_facts = (
            before is not None
            and before.facts.records is after.facts.records
            and before.facts.departures is after.facts.departures
        )
        if same_facts and before is not None and before.state.skills is after.state.skills:
            continue
        was = member_of(before)
        if same_facts and was is not None:
            now: Member | None = Member(was.employee_id, was.records, was.left_on, _skills(after))
        else:
            now = member_of(after)
        if was != now:
            out.update(membership_changes(was, now))
    return out


def lock_key(schema: str) -> int:
    """The advisory lock the handler takes before locking rows, so it waits for the other
    replicas' transactions that add to the counts (held to COMMIT; see `handler` and
    `PostgresEmployeeProjection.lock_many`'s `turn`)."""
    return eventstore.lock_key(schema, "memberships")
