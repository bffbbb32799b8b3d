"""The admin operations below the doors (design.md, "Admin operations and the admin API"): connect,
list groups, settings and Save and Sync, start a sync, delete and erase employees, disconnect. The CLI,
the admin API and Prefect are thin adapters over these; a door holds no rule of its own."""
