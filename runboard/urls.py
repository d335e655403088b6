from __future__ import annotations

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.urls import include, path

from adminpanel import action_views, views
from adminpanel.api.openapi import openapi_json
from adminpanel.audit import views as audit_views
from adminpanel.charts import views as chart_views
from adminpanel.observability import health, metrics

urlpatterns = [
    path("", views.sessions, name="sessions"),
    path("stuck/", views.stuck, name="stuck"),
    path("sessions/<int:pk>/", views.session_detail, name="session_detail"),
    path(
        "sessions/<int:pk>/act/<slug:slug>/",
        action_views.session_action,
        name="session_action",
    ),
    path("act/bulk/<slug:slug>/", action_views.bulk_action, name="bulk_action"),
    path("warnings/", views.warnings, name="warnings"),
    path("gateways/", views.gateways, name="gateways"),
    path("charts/", chart_views.charts, name="charts"),
    path("audit/", audit_views.audit_log, name="audit"),
    path("audit/<int:pk>/", audit_views.audit_entry, name="audit_entry"),
    path("audit/export.csv", audit_views.export_csv, name="audit_export_csv"),
    path("audit/export.json", audit_views.export_json, name="audit_export_json"),
    path("healthz", health.healthz, name="healthz"),
    path("readyz", health.readyz, name="readyz"),
    path("metrics", metrics.metrics, name="metrics"),
    path("api/v1/openapi.json", openapi_json, name="api_openapi"),
    path("api/v1/", include("adminpanel.api.views")),
    path("admin/", admin.site.urls),
    path("login/", auth_views.LoginView.as_view(template_name="login.html"), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
]
