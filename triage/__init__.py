"""Mail triage: read IMAP mail, ask the mailbox owner's own model about it, store the answers."""
