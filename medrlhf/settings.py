"""Settings for medrlhf, driven by environment variables.

``MEDRLHF_ENV=production`` switches on the hardened profile, which refuses to
start without a real ``SECRET_KEY``.  Without it, the embedded default runs on
SQLite with a Celery broker that needs no server, keeping everything in ``var/``.
"""

from __future__ import annotations

import os
import secrets
from datetime import timedelta
from pathlib import Path

import environ
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
environ.Env.read_env(BASE_DIR / ".env", overwrite=False)

ENVIRONMENT = env.str("MEDRLHF_ENV", default="development")
if ENVIRONMENT not in {"development", "production", "test"}:
    raise ImproperlyConfigured(
        f"MEDRLHF_ENV must be development, production or test, not {ENVIRONMENT!r}"
    )
PRODUCTION = ENVIRONMENT == "production"

# Everything this process writes (the SQLite file with its API tokens, images,
# models, the broker's messages, staged uploads) is readable by the server's
# user only. Static files are served by the process itself (whitenoise), so
# nothing else needs to read them. MEDRLHF_UMASK loosens it where a shared
# group must read the files (e.g. "0027").


def _umask() -> int:
    text = env.str("MEDRLHF_UMASK", default="0077")
    try:
        value = int(text, 8)
    except ValueError:
        value = -1
    if not 0 <= value <= 0o777 or value & 0o007 != 0o007:
        raise ImproperlyConfigured(
            f"MEDRLHF_UMASK must be an octal mask that hides files from other "
            f"users (ending in 7, e.g. 0077 or 0027), not {text!r}"
        )
    return value


os.umask(_umask())
VAR_DIR = Path(env.str("MEDRLHF_VAR_DIR", default=str(BASE_DIR / "var")))
VAR_DIR.mkdir(parents=True, exist_ok=True)
# An install from before this rule: close the folder itself, which guards
# everything under it.
if VAR_DIR.stat().st_uid == os.getuid():
    VAR_DIR.chmod(0o700)


def _secret_key() -> str:
    key = env.str("SECRET_KEY", default="")
    if PRODUCTION:
        if len(key) < 50 or len(set(key)) < 5 or key.startswith("django-insecure"):
            raise ImproperlyConfigured(
                "SECRET_KEY must be set to a random value of at least 50 characters "
                "in production (python -c 'import secrets; "
                "print(secrets.token_urlsafe(64))')"
            )
        return key
    if key:
        return key
    # Development: a per-machine random key kept outside the repository.
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        key_file.write_text(secrets.token_urlsafe(64))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


SECRET_KEY = _secret_key()
DEBUG = env.bool("DEBUG", default=not PRODUCTION)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS", default=[] if PRODUCTION else ["localhost", "127.0.0.1", "[::1]"]
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "django_htmx",
    "template_partials",
    "axes",
    "annotations",
    "models_ml",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "medrlhf.middleware.ContentSecurityPolicyMiddleware",
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "medrlhf.urls"
WSGI_APPLICATION = "medrlhf.wsgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
                "annotations.context_processors.roles",
            ],
        },
    },
]

DATABASES = {
    "default": env.db_url(
        "DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'medrlhf.sqlite3'}"
    )
}
DATABASES["default"]["ATOMIC_REQUESTS"] = True
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # A file, not memory, so that a Celery worker started by a test sees it.
    DATABASES["default"]["TEST"] = {"NAME": str(VAR_DIR / "test.sqlite3")}
    # WAL and IMMEDIATE transactions let the web server and the worker share
    # the file without "database is locked" errors under ordinary load.
    DATABASES["default"]["OPTIONS"] = {
        "timeout": 30,
        "transaction_mode": "IMMEDIATE",
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
    }
else:
    DATABASES["default"].setdefault("CONN_MAX_AGE", env.int("CONN_MAX_AGE", 60))
    # Short OLTP queries: PostgreSQL's JIT spent most of a progress count
    # compiling it (measured in bench/load.py).
    DATABASES["default"].setdefault("OPTIONS", {}).setdefault("options", "-c jit=off")
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
# Throttle counters; use Redis (redis://…) when several web processes run.
CACHES = {"default": env.cache("CACHE_URL", default="locmemcache://")}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation."
        "UserAttributeSimilarityValidator"
    },
    {
        "NAME": "django.contrib.auth.password_validation.MinimumLengthValidator",
        "OPTIONS": {"min_length": 12},
    },
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
AUTHENTICATION_BACKENDS = [
    "axes.backends.AxesStandaloneBackend",
    "django.contrib.auth.backends.ModelBackend",
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

# Idle timeout: the session expires after this many seconds without a request.
SESSION_COOKIE_AGE = env.int("SESSION_IDLE_TIMEOUT", default=30 * 60)
SESSION_SAVE_EVERY_REQUEST = True
SESSION_EXPIRE_AT_BROWSER_CLOSE = True
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"


def _quota(name: str, default: str) -> tuple[int, int] | None:
    """``concurrent/daily`` ML jobs a role may have, or ``none``."""
    text = env.str(name, default=default).strip().lower()
    if text == "none":
        return None
    try:
        concurrent, daily = (int(part) for part in text.split("/"))
    except ValueError:
        concurrent = daily = -1
    if not (0 <= concurrent <= 1000 and 0 <= daily <= 100_000):
        raise ImproperlyConfigured(
            f"{name} must be 'concurrent/daily' (e.g. 2/20) or 'none', not {text!r}"
        )
    return concurrent, daily


# ML jobs (generation, training) a user may have queued or running at once,
# and start in 24 hours, by role; a user with several roles gets the most
# generous. Admins run the loop (retraining chains) and are not limited.
JOB_QUOTAS = {
    "physician": _quota("JOB_QUOTA_PHYSICIAN", "2/20"),
    "researcher": _quota("JOB_QUOTA_RESEARCHER", "4/50"),
    "admin": _quota("JOB_QUOTA_ADMIN", "none"),
}
# The most UNet passes one generate request may ask for (images x tries x
# steps): 256 images at 8 tries (threshold mode's default attempts), 50 steps.
GENERATE_MAX_UNET_PASSES = env.int("GENERATE_MAX_UNET_PASSES", default=256 * 8 * 50)

# How long an API token lives; rotate before it ends (POST /api/auth/token/rotate/).
API_TOKEN_TTL = timedelta(days=env.int("API_TOKEN_TTL_DAYS", default=30))
if not timedelta(hours=1) <= API_TOKEN_TTL <= timedelta(days=365):
    raise ImproperlyConfigured("API_TOKEN_TTL_DAYS must be 1 to 365")

# How many reverse proxies in front of the server append to X-Forwarded-For
# (the TLS proxy: 1). The lockout, the throttles and the audit log all take
# the client's address from it (medrlhf/clientip.py); 0 ignores the header.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=0)
if not 0 <= TRUSTED_PROXY_HOPS <= 10:
    raise ImproperlyConfigured("TRUSTED_PROXY_HOPS must be 0 to 10")
AXES_CLIENT_IP_CALLABLE = "medrlhf.clientip.client_ip"
AXES_FAILURE_LIMIT = env.int("AXES_FAILURE_LIMIT", default=5)
AXES_COOLOFF_TIME = timedelta(minutes=env.int("AXES_COOLOFF_MINUTES", default=30))
AXES_LOCKOUT_PARAMETERS = [["username", "ip_address"]]
AXES_RESET_ON_SUCCESS = True
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"
# Outside production, whitenoise serves straight from the source folders.
WHITENOISE_USE_FINDERS = not PRODUCTION
WHITENOISE_AUTOREFRESH = DEBUG
MEDIA_ROOT = Path(env.str("MEDIA_ROOT", default=str(VAR_DIR / "media")))
# Media are private: served only through permission-checked views.
MEDIA_URL = "/media-not-public/"
STORAGES = {
    "default": {
        "BACKEND": env.str(
            "MEDIA_STORAGE", default="django.core.files.storage.FileSystemStorage"
        )
    },
    "staticfiles": {
        "BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"
        if PRODUCTION
        else "django.contrib.staticfiles.storage.StaticFilesStorage"
    },
}

# Where admins may point server-side imports; uploads are unpacked here too.
IMPORT_ROOTS = [
    Path(p) for p in env.list("IMPORT_ROOTS", default=[str(VAR_DIR / "imports")])
]
UPLOAD_STAGING_DIR = VAR_DIR / "imports" / "uploads"
MAX_UPLOAD_BYTES = env.int("MAX_UPLOAD_BYTES", default=2 * 1024**3)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024**2
FILE_UPLOAD_PERMISSIONS = 0o600
FILE_UPLOAD_DIRECTORY_PERMISSIONS = 0o700
MODELS_DIR = Path(env.str("MODELS_DIR", default=str(VAR_DIR / "models")))

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework.authentication.SessionAuthentication",
        "annotations.authentication.TokenAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["rest_framework.permissions.IsAuthenticated"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_PAGINATION_CLASS": "medrlhf.pagination.LimitOffsetPagination",
    "PAGE_SIZE": 100,
    "DEFAULT_THROTTLE_CLASSES": ["medrlhf.throttling.AnonThrottle"],
    "DEFAULT_THROTTLE_RATES": {"anon": "30/minute", "login": "10/minute"},
    "EXCEPTION_HANDLER": "medrlhf.exceptions.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "medrlhf API",
    "DESCRIPTION": "Ratings, rounds, datasets, exports and jobs of medrlhf.",
    "VERSION": "0.1.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {
        "RoundStatusEnum": "annotations.models.RoundStatus",
        "JobStatusEnum": "models_ml.models.JobStatus",
        "ModelKindEnum": "models_ml.models.ModelKind",
        "JobKindEnum": "models_ml.models.JobKind",
    },
}

# Celery: the embedded default uses kombu's filesystem transport (no server).
_broker_dir = VAR_DIR / "broker"
CELERY_BROKER_URL = env.str("CELERY_BROKER_URL", default="filesystem://")
if CELERY_BROKER_URL.startswith("filesystem://"):
    (_broker_dir / "queue").mkdir(parents=True, exist_ok=True)
    (_broker_dir / "control").mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_broker_dir / "queue"),
        "data_folder_out": str(_broker_dir / "queue"),
        # Exchange bindings; kombu's default is ./control in the working folder.
        "control_folder": str(_broker_dir / "control"),
        "store_processed": False,
    }
CELERY_TASK_SERIALIZER = "json"
CELERY_RESULT_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_TASK_ROUTES = {"models_ml.tasks.ml_*": {"queue": "ml"}}
CELERY_TASK_SOFT_TIME_LIMIT = env.int("CELERY_TASK_SOFT_TIME_LIMIT", default=6 * 3600)
CELERY_TASK_TIME_LIMIT = CELERY_TASK_SOFT_TIME_LIMIT + 300
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A running job that has not written a heartbeat for this long is retried
# (or failed after JOB_MAX_ATTEMPTS); its worker writes one every third of it.
JOB_STALE_AFTER = timedelta(seconds=env.int("JOB_STALE_AFTER_SECONDS", default=300))
JOB_MAX_ATTEMPTS = env.int("JOB_MAX_ATTEMPTS", default=3)
# CPU threads the ML jobs of one host share (models_ml/threads.py); 0: the
# OMP_NUM_THREADS of the worker when set, else every core it may use.
ML_CPU_THREADS = env.int("ML_CPU_THREADS", default=0)
# ML jobs the embedded runtime's worker runs at once (run_embedded); 0: two
# on a machine of two cores or more, else one.
ML_WORKER_CONCURRENCY = env.int("ML_WORKER_CONCURRENCY", default=0)
# How often beat runs the reaper: a dead worker's job is retried between
# JOB_STALE_AFTER and JOB_STALE_AFTER + this after its last heartbeat.
JOB_REAP_EVERY_S = env.float("JOB_REAP_EVERY_SECONDS", default=60.0)
CELERY_BEAT_SCHEDULE = {
    "reap-stale-jobs": {
        "task": "models_ml.tasks.reap_stale_jobs",
        "schedule": JOB_REAP_EVERY_S,
    },
}

# A served image that has not been rated for this long goes back to the pool.
ASSIGNMENT_LEASE = timedelta(minutes=env.int("ASSIGNMENT_LEASE_MINUTES", default=30))

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}
    },
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    # Decoder failures reach the import report with the file's name; pydicom's
    # own tracebacks for them would only be noise (and may quote header values).
    "loggers": {"PIL": {"level": "WARNING"}, "pydicom": {"level": "CRITICAL"}},
}

if PRODUCTION:
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_CONTENT_TYPE_NOSNIFF = True
    SECURE_REFERRER_POLICY = "same-origin"
    X_FRAME_OPTIONS = "DENY"

# Sample grids: images per prompt made when a diffusion version is created
# (0: none), and at most this many prompts.
MODEL_SAMPLE_IMAGES = env.int("MODEL_SAMPLE_IMAGES", default=4)
MODEL_SAMPLE_PROMPTS = env.int("MODEL_SAMPLE_PROMPTS", default=6)
