"""The technician's workflows: identity and enrollment, pairing, device registry,
diagnostics, factory reset (`carebox provision ...`)."""
