"""`{% sidebar %}`: the session sidebar (harness/portal/sidebar.py), rendered with the page."""

from __future__ import annotations

from django import template

from ..sidebar import sidebar_context

register = template.Library()


@register.inclusion_tag("portal/sidebar/nav.html", takes_context=True)
def sidebar(context, current: str = "", socket: bool = True) -> dict:
    """`current`: the open session's id (marked as the current page); `socket`: open the sidebar's own socket
    (a page whose socket joins the user's group already passes False)."""
    return sidebar_context(current=str(current or ""), socket=socket)
