"""Moving users to the new forge: one primary at a time, by DNS or a reserved IP."""
