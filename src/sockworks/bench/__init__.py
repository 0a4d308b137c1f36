"""``sockworks bench``: a closed-loop load generator and a model comparison.

- :mod:`.histogram` — the latency histogram (log-linear, mergeable).
- :mod:`.workloads` — sans-IO request generators and reply parsers for the
  echo, KV text, RESP and UDP JSON protocols.
- :mod:`.runner` — the asyncio (uvloop) client connections, several client
  processes, error counting, the progress line, the result.
- :mod:`.compare` — ``bench compare``: start a server per model, run a grid,
  write Markdown, JSON and a plot.
"""
