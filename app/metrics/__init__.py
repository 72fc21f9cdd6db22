"""Prometheus metrics of the core and the workers: what they count (``registry``), what is read at scrape time
(``scrape``), and how each process serves them (``exposition``)."""
