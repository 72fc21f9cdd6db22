"""The funnel and time-to-complete charts: SVG drawn on the server by pygal, inlined in the page.

No JavaScript and nothing from a CDN: pygal adds a tooltip script from its CDN by default
(turned off with ``js=[]``) and an inline config script always (removed from the tree here),
so the page works under a strict Content-Security-Policy and on a machine with no internet.
"""

from __future__ import annotations

from itertools import pairwise
from typing import Any

import pygal
from markupsafe import Markup
from pygal.etree import etree
from pygal.style import Style

from app.admin.queries import COMPLETION_BUCKETS, StepRow

STYLE = Style(font_family="system-ui, sans-serif", background="transparent", plot_background="transparent",
              colors=("#3a6ea5", "#6aa84f", "#cc4125"), label_font_size=12, major_label_font_size=12,
              legend_font_size=13, title_font_size=15)
SVG_SCRIPT = "{http://www.w3.org/2000/svg}script"


def _config(title: str) -> dict[str, Any]:
    return {"title": title, "js": [], "style": STYLE, "width": 760, "height": 340, "disable_xml_declaration": True,
            "legend_at_bottom": True, "print_values": False, "show_y_guides": True, "x_label_rotation": 20}


def _svg(chart: Any) -> Markup:
    tree = chart.render_tree()  # lxml's tree where installed, else the standard library's
    for parent in list(tree.iter()):
        for child in list(parent):
            if child.tag in (SVG_SCRIPT, "script"):
                parent.remove(child)
    return Markup(etree.tostring(tree, encoding="unicode"))  # pygal escapes the labels it draws


def funnel_chart(steps: list[StepRow], title: str, reached: str, passed: str, stuck: str) -> Markup:
    chart = pygal.Bar(**_config(title))
    chart.x_labels = [f"{step.index + 1}. {step.step_id}" for step in steps]
    chart.add(reached, [step.reached for step in steps])
    chart.add(passed, [step.passed for step in steps])
    chart.add(stuck, [step.stuck for step in steps])
    return _svg(chart)


def completion_chart(counts: list[int], title: str, runs: str) -> Markup:
    chart = pygal.Bar(**_config(title))
    chart.x_labels = bucket_labels()
    chart.add(runs, counts)
    return _svg(chart)


def _duration(minutes: int) -> str:
    if minutes < 60:
        return f"{minutes} min"
    return f"{minutes // 60} h" if minutes < 1440 else f"{minutes // 1440} d"


def bucket_labels() -> list[str]:
    bounds = [_duration(minutes) for minutes in COMPLETION_BUCKETS]
    return [f"< {bounds[0]}", *(f"{low}–{high}" for low, high in pairwise(bounds)), f"≥ {bounds[-1]}"]
