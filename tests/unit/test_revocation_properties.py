"""Property tests: for any event and snapshot, DPS steps come first and no revocation lifts a block."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from shared.events import parse_event
from shared.model import (
    AttestationType,
    CertificateInfo,
    EnrollmentGroup,
    HubDevice,
    HubDeviceStatus,
    IndividualEnrollment,
    InventorySnapshot,
    PastRevocation,
    ProvisioningStatus,
    RegistrationState,
)
from shared.plan import Service, StepKind
from shared.policy import DEFAULT_POLICY, load_policy
from shared.revocation import plan_revocation
from tests.support.certs import make_ca, make_intermediate, make_leaf

ROOT = make_ca("Prop Root")
INTER = make_intermediate("Prop Inter", ROOT)
LEAF = make_leaf("dev-1", INTER)
GROUPS = [
    EnrollmentGroup(
        "root-g", AttestationType.X509, ProvisioningStatus.ENABLED, (CertificateInfo("", "", pem=ROOT.pem),)
    ),
    EnrollmentGroup(
        "inter-g",
        AttestationType.X509,
        ProvisioningStatus.DISABLED,
        (CertificateInfo("", "", pem=INTER.pem),),
    ),
    EnrollmentGroup("sym-g", AttestationType.SYMMETRIC_KEY, ProvisioningStatus.ENABLED),
    EnrollmentGroup("ca-g", AttestationType.X509_CA_REFERENCES, ProvisioningStatus.ENABLED),
]
TYPES = ["lost", "stolen", "compromised", "sold", "moved", "retired", "found"]
statuses = st.sampled_from(list(ProvisioningStatus))
enrollments = st.one_of(
    st.none(),
    st.builds(
        IndividualEnrollment,
        st.just("dev-1"),
        st.sampled_from(list(AttestationType)),
        statuses,
        blocking_marker=st.sampled_from([None, "evt-old", "evt-lost"]),
    ),
)
registrations = st.one_of(
    st.none(),
    st.builds(
        RegistrationState,
        st.just("dev-1"),
        st.sampled_from(["dev-1", None]),
        st.sampled_from(["hub-a.example", None]),
        st.just("assigned"),
        enrollment_group_id=st.sampled_from([None, "inter-g", "sym-g"]),
    ),
)
hub_devices = st.one_of(
    st.none(),
    st.builds(
        HubDevice,
        st.sampled_from(["hub-a.example", "hub-b.example"]),
        st.just("dev-1"),
        st.sampled_from(list(HubDeviceStatus)),
    ),
)
histories = st.lists(
    st.builds(
        PastRevocation,
        st.sampled_from(["evt-old", "evt-lost", "evt-x"]),
        st.sampled_from(TYPES),
        st.lists(st.sampled_from([k.value for k in StepKind]), max_size=4).map(tuple),
    ),
    max_size=3,
).map(tuple)
snapshots = st.builds(
    InventorySnapshot,
    registration=registrations,
    enrollment=enrollments,
    groups=st.lists(st.sampled_from(GROUPS), unique=True).map(tuple),
    hub_device=hub_devices,
    history=histories,
)
policies = st.sampled_from(
    [
        DEFAULT_POLICY,
        load_policy({"sold": {"hub": "disable"}, "lost": {"hub": "none"}}),
        load_policy({"lost": {"enrollment": "delete", "hub": "delete"}}),
    ]
)


@st.composite
def events(draw):
    event_type = draw(st.sampled_from(TYPES))
    body = {"eventId": "evt-new", "type": event_type, "occurredAt": "2025-06-01T09:30:00Z", "source": "prop"}
    if event_type in ("compromised", "retired") and draw(st.booleans()):
        body["enrollmentGroupId"] = draw(st.sampled_from([g.group_id for g in GROUPS]))
        body["deleteGroup"] = event_type == "retired" and draw(st.booleans())
    else:
        body["registrationId"] = "dev-1"
        if draw(st.booleans()):
            body["certificate"] = LEAF.pem
        if event_type == "found":
            body["force"] = draw(st.booleans())
    return parse_event(body)


@settings(max_examples=300, deadline=None)
@given(events(), policies, snapshots)
def test_every_dps_step_comes_before_any_hub_step(event, policy, snapshot):
    services = [s.service for s in plan_revocation(event, policy, snapshot).steps]
    assert services == sorted(services, key=lambda s: s is Service.HUB)


@settings(max_examples=300, deadline=None)
@given(events(), policies, snapshots)
def test_no_revocation_plan_removes_or_deletes_a_blocking_enrollment(event, policy, snapshot):
    plan = plan_revocation(event, policy, snapshot)
    kinds = {s.kind for s in plan.steps}
    if event.type.value != "found":
        assert StepKind.BLOCKING_ENROLLMENT_REMOVED not in kinds
        blocking = snapshot.enrollment is not None and snapshot.enrollment.is_blocking
        assert not (blocking and StepKind.ENROLLMENT_DELETED in kinds)


@settings(max_examples=200, deadline=None)
@given(events(), policies, snapshots)
def test_refused_plans_have_no_steps_and_others_give_reasons(event, policy, snapshot):
    plan = plan_revocation(event, policy, snapshot)
    assert plan.event_id == "evt-new"
    if plan.refused:
        assert plan.steps == ()
        assert plan.refusal
    assert all(s.reason for s in plan.steps)
