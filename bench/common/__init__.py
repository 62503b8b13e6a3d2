"""Pieces every benchmark shares: the bridge as a child process, its typed log, the
simulated callers' view of the wire, CPU accounting, statistics, tables and JSON output."""
