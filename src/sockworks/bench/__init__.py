"""``sockworks bench``: a closed-loop load generator and a model comparison.

- :mod:`.histogram` — the latency histogram (log-linear, mergeable).
- :mod:`.workloads` — sans-IO request generators and reply parsers for the
  echo, KV text, RESP and UDP JSON protocols.
- :mod:`.results` — a run's parameters, its result, the error kinds.
- :mod:`.clients` — the asyncio (uvloop) connections of one client process.
- :mod:`.runner` — one process or several started together; the progress line.
- :mod:`.report` — the human table and the JSON document.
- :mod:`.compare` — ``bench compare``: start a server per model, run a grid,
  write Markdown, JSON and a plot.
"""
