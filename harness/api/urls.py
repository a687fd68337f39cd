from django.urls import re_path

from . import views

# Trailing slashes are optional: clients write both, and a redirect would drop a POST body.
urlpatterns = [
    re_path(r"^models/?$", views.models, name="api-models"),
    re_path(r"^sessions/?$", views.sessions, name="api-sessions"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/?$", views.session, name="api-session"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/members/?$", views.members, name="api-members"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/members/(?P<kind>user|group)s/(?P<name>[^/]+)/?$", views.member,
            name="api-member"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/runs/?$", views.runs, name="api-runs"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/export/?$", views.export, name="api-export"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/files/?$", views.files, name="api-files"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/files/(?P<path>.+)$", views.file, name="api-file"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/stop/?$", views.stop, name="api-stop"),
    re_path(r"^sessions/(?P<session_id>[^/]+)/steer/?$", views.steer, name="api-steer"),
    re_path(r"^runs/(?P<run_id>[^/]+)/?$", views.run, name="api-run"),
    re_path(r"^approvals/(?P<approval_id>[^/]+)/?$", views.approval, name="api-approval"),
    re_path(r"^.*$", views.not_found),
]
