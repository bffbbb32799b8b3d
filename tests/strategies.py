"""Hypothesis strategies for what an upstream might send: any JSON, and records shaped like a Unified.to
employee whose every field may be of the wrong type. For the normalize and bad-input fuzz tests."""

from __future__ import annotations

from hypothesis import strategies as st

json_scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20)
json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=10,
)
email_entries = st.lists(
    st.fixed_dictionaries(
        {},
        optional={
            "email": st.emails() | st.text(max_size=30) | json_values,
            "type": st.sampled_from(["WORK", "HOME", "OTHER", "work", "FAX"]) | json_values,
        },
    ),
    max_size=3,
)
employee_like = st.fixed_dictionaries(
    {},
    optional={
        "id": st.text(max_size=10) | json_values,
        "name": st.text(max_size=30) | json_values,
        "first_name": st.text(max_size=30) | json_values,
        "last_name": st.text(max_size=30) | json_values,
        "emails": email_entries | json_values,
        "employment_status": st.sampled_from(["ACTIVE", "INACTIVE", "LEAVE"]) | json_values,
        "groups": st.lists(st.fixed_dictionaries({}, optional={"id": json_values})) | json_values,
        "date_of_birth": json_values,
    },
)
