"""The leaf every other package imports downward: the product's words, statuses, email rules, schedules and
the error base. It imports nothing of the project."""
