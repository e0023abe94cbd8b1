"""Processes as Linux's /proc shows them: what the tests of killed parents and their
workers look at (zombies count as ended: a dead orphan may wait to be reaped)."""
import glob


def _stat(pid):
    """(state, ppid, pgrp) of process ``pid``, or None once it has gone."""
    try:
        fields = open(f"/proc/{pid}/stat").read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return fields[0], int(fields[1]), int(fields[2])


def _pids():
    return [int(path.split("/")[2]) for path in glob.glob("/proc/[0-9]*/stat")]


def alive(pid):
    """Whether process ``pid`` exists and is not a zombie."""
    stat = _stat(pid)
    return stat is not None and stat[0] != "Z"


def children(pid):
    """Pids of the processes whose parent is ``pid``."""
    return [p for p in _pids() if (_stat(p) or (None, None))[1] == pid]


def live_in_group(pgid, parent=None):
    """Pids of the live processes of process group ``pgid``; with ``parent``, only its
    pool workers (children running multiprocessing's spawn)."""
    live = []
    for pid in _pids():
        stat = _stat(pid)
        if stat is None or stat[2] != pgid or stat[0] == "Z":
            continue
        if parent is not None:
            try:
                cmdline = open(f"/proc/{pid}/cmdline", "rb").read()
            except OSError:
                continue
            if stat[1] != parent or b"spawn_main" not in cmdline:
                continue
        live.append(pid)
    return live
