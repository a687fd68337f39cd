from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from harness.portal import views as portal_views

urlpatterns = [
    path("admin/", admin.site.urls),
    path("api/", include("harness.api.urls")),
    path("login/", auth_views.LoginView.as_view(template_name="portal/login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("", portal_views.home, name="home"),
    path("sessions/<uuid:session_id>/", portal_views.session_page, name="session"),
]
