"""Backups: the offsite restic store, its snapshots, recovery points, restore sources."""
