"""Reusable widgets: gauges, history charts, banners, model cards, the socket."""
