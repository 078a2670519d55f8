"""Pure code of the triage domain: parsing, images, schemas, prompts, rules. No I/O here."""
