"""A registered version measured and judged: evaluation (`python -m evaluation`), the
promotion gate and rollback (`promote`), the HTML/PDF report (`report`), behavioural cases
(`behaviour`) and the offline drift check (`drift_check`)."""
