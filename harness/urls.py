from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from harness import health
from harness.metrics_view import metrics_view
from harness.portal import sidebar
from harness.portal import views as portal
from harness.portal.files import session_files
from harness.portal.tools_views import session_tools_view

urlpatterns = [
    path("healthz", health.healthz, name="healthz"),
    path("metrics", metrics_view, name="metrics"),
    path("admin/", admin.site.urls),
    path("api/", include("harness.api.urls")),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", portal.home, name="home"),
    path("sessions/new", portal.session_new, name="portal-session-create"),
    path("sessions/<uuid:session_id>/", portal.session_page, name="session"),
    path("sessions/<uuid:session_id>/rename", portal.session_rename_view, name="portal-session-rename"),
    path("sessions/<uuid:session_id>/messages", portal.session_messages, name="portal-session-messages"),
    path("sessions/<uuid:session_id>/model", portal.session_model, name="portal-session-model"),
    path("sessions/<uuid:session_id>/delete", portal.session_delete_view, name="portal-session-delete"),
    path("sessions/<uuid:session_id>/share", portal.share, name="portal-share"),
    path("sessions/<uuid:session_id>/share/remove", portal.share_remove, name="portal-share-remove"),
    path("sessions/<uuid:session_id>/tools", session_tools_view, name="portal-session-tools"),
    path("sessions/<uuid:session_id>/send", portal.send, name="portal-send"),
    path("sessions/<uuid:session_id>/files", session_files, name="portal-session-files"),
    path("sessions/<uuid:session_id>/regenerate", portal.regenerate, name="portal-regenerate"),
    path("sessions/<uuid:session_id>/stop", portal.stop, name="portal-stop"),
    path("sessions/<uuid:session_id>/steer", portal.steer, name="portal-steer"),
    path("approvals/<uuid:approval_id>/decide", portal.decide, name="portal-decide"),
    path("runs/<uuid:run_id>/receipt", portal.receipt, name="portal-receipt"),
    path("sidebar/", sidebar.sidebar, name="portal-sidebar"),
    path("sidebar/more", sidebar.sidebar_more, name="portal-sidebar-more"),
    path("sidebar/item/<uuid:session_id>", sidebar.sidebar_item, name="portal-sidebar-item"),
    path("sidebar/<uuid:session_id>/rename", sidebar.sidebar_rename, name="portal-sidebar-rename"),
    path("sidebar/<uuid:session_id>/archive", sidebar.sidebar_archive, name="portal-sidebar-archive"),
    path("sidebar/<uuid:session_id>/delete", sidebar.sidebar_delete, name="portal-sidebar-delete"),
]
