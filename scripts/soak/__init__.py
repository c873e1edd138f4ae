"""Soak: many viewer streams through the broker for a long time, with steady
launches and disconnects on the side, looking for errors and leaks.

Everything runs on loopback as real processes: the broker (``python -m broker
serve``), a simulated guacd (``python -m scripts.soak --serve-guacd``), and
this driver, whose viewers behave like guacamole-common-js (they acknowledge each
``sync``, ping every 500 ms and expect the echo, and press a key now and then
so the desktop draws). Streams are spread over ``--workspaces`` sessions (one
per user; several viewers of one session each get their own guacd
connection). Meanwhile a churn loop launches a spare workspace, watches its
desktop until the first ``sync``, closes the viewer and disconnects, every
``--churn-every`` seconds.

Measured from ``/proc/<broker pid>`` (RSS, open file descriptors) and the
broker's ``broker_asyncio_tasks`` gauge at four points: idle before the
streams (sessions launched, database pool warmed), after the warm-up, at the
end of the run (streams still open), and idle again once every stream has
closed. It passes when:

- there were no errors (a stream closed or went silent unasked, an echo came
  later than 15 s, an unexpected HTTP status, an ERROR in the broker's log,
  the broker exiting);
- RSS at the end is within 5 % of RSS after the warm-up;
- file descriptors and asyncio tasks are back to their idle baseline (the
  same counts) once the streams have ended.

    python -m scripts.soak                          # 200 streams, 10 minutes (make soak)
    python -m scripts.soak --streams 20 --seconds 20 --warmup 5   # the short run in make test

Prints progress every ``--report-every`` seconds, a table of the four
points, then ``soak: ... result=PASS|FAIL`` and exits 0 on PASS. It stops by
itself: the run is bounded by its duration, and every wait has a timeout.
"""
