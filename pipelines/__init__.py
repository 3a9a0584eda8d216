"""The Dagster code location: Definitions, jobs, schedules, sensors and the profile switch."""
