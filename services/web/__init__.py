"""The web console: OKRs, KPIs, gaps and history in a browser, read through the services'
HTTP APIs with the signed-in user's token, live from ``alignment.events``."""
