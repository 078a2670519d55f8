"""The sub-commands of the `triage` command, grouped by what they touch."""
