"""A tenant's deprovisioning policy: what a run does to the employees it flags (design.md, "Lifecycle after
matching").

- `flag` (the default): the status says non_matching or terminated, nothing more.
- `deactivate`: also inactive for the platform (`deactivated_at` set), until the source user is active again.
- `delete`: deactivated at once, and removed by the first run after `grace_days` days of being flagged.

Rehire always restores: a flagged employee whose source user is active again is synced and active again;
a deleted one comes back as a new employee, linked. Nothing happens to an employee the run could not judge.
"""

from __future__ import annotations

from dataclasses import dataclass

from domain.errors import ExplainedError

MODES = ("flag", "deactivate", "delete")
MAX_GRACE_DAYS = 3650


class PolicyError(ExplainedError):
    """What was asked for is not a deprovisioning policy."""


@dataclass(frozen=True)
class Policy:
    mode: str = "flag"
    grace_days: int = 30

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise PolicyError(f"Unknown deprovisioning mode {self.mode!r}; choose one of {', '.join(MODES)}.")
        if not 1 <= self.grace_days <= MAX_GRACE_DAYS:
            raise PolicyError(f"The grace period must be 1 to {MAX_GRACE_DAYS} days, not {self.grace_days}.")

    @property
    def deactivates(self) -> bool:
        return self.mode in ("deactivate", "delete")

    @property
    def deletes(self) -> bool:
        return self.mode == "delete"

    def as_dict(self) -> dict[str, str | int]:
        """As the doors print it (CLI JSON, the admin API, the audit log)."""
        return {"mode": self.mode, "grace_days": self.grace_days}

    def describe(self) -> str:
        if self.mode == "flag":
            return "flag: employees who left or were disabled are flagged (non_matching, terminated), nothing more"
        if self.mode == "deactivate":
            return (
                "deactivate: flagged employees are also inactive for the platform, until their source user "
                "is active again"
            )
        return (
            f"delete: flagged employees are inactive for the platform at once, and deleted by the first run "
            f"{self.grace_days} days after they were flagged"
        )
