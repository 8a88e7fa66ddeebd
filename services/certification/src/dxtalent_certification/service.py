"""The certification service: skills and DX-leader levels, from enrollment's domain events.

Consumes the enrollment events that record a fact, `enrollment_facts.SUBJECTS` (stream
`DX_EVENTS`, durable `certification`; not CourseEnrolled nor ImprovementCaseReported); each fact
updates the employee's row in the `employees` read model, the pure rules (`domain`) decide
what changed, and the resulting `SkillAcquired` / `SkillRevoked` / `LevelCertified` /
`LevelRevoked` events are appended to the service's event store and published from its outbox
on `dx.events.certification.*`. A message that is not a valid enrollment event is
dead-lettered on `dx.deadletter.certification` with its reason. HTTP: see `http`.
"""

from __future__ import annotations

from dxtalent_certification import credentials, enrollment_facts, memberships
from dxtalent_certification.handler import certification_handler
from dxtalent_certification.http import routes
from dxtalent_certification.projection import COMPONENT, MIGRATIONS, PRIVILEGES
from dxtalent_contracts import subjects
from dxtalent_infra.edge import domain_events
from dxtalent_infra.runtime import CRITICAL_PATH_BATCH_INTERVAL_S, ConsumerSpec, ServiceSpec

SPEC = ServiceSpec(
    name="certification",
    default_port=8082,
    publishes=True,
    consumers=(
        ConsumerSpec(
            stream="DX_EVENTS",
            durable="certification",
            filter_subjects=enrollment_facts.SUBJECTS,
            deadletter_subject=subjects.DEADLETTER_CERTIFICATION,
            handler=certification_handler,
            parser=domain_events(check_subject=False),  # fact_of names what it accepts
            # on the path to LevelCertified: batches at most every 20 ms under a steady
            # load, for fewer per-batch costs on the cores the path shares (decision 0345)
            min_batch_interval_s=CRITICAL_PATH_BATCH_INTERVAL_S,
        ),
    ),
    migrations=(
        (COMPONENT, (*MIGRATIONS, memberships.MIGRATION)),
        (credentials.COMPONENT, credentials.MIGRATIONS),
    ),
    privileges=(*PRIVILEGES, *memberships.PRIVILEGES, *credentials.PRIVILEGES),
    routers=(routes,),
)
