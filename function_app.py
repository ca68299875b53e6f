"""The one FunctionApp. It only registers Blueprints; the work lives in `functions/` and `shared/`."""

from shared.adapters.memory import before_arrow

before_arrow()  # before any module loads pyarrow: its allocator, and pandas kept out (see shared/adapters/memory.py)

import azure.functions as func  # noqa: E402  (after before_arrow, on purpose)

from functions import (access_api, automation_api, config_api, exports_api, http_api, notifications_api,  # noqa: E402
                       openapi_api, timers, web_app, worker)
from shared.adapters.memory import configure_memory  # noqa: E402
from shared.adapters.settings import refuse_auth_disabled_in_azure  # noqa: E402
from shared.adapters.telemetry import configure_logging  # noqa: E402

refuse_auth_disabled_in_azure()  # AUTH_DISABLED is for development: never start with it in Azure
configure_logging()  # structured lines, secrets redacted; Application Insights when its setting is present
configure_memory()  # the worker's allocators hand freed memory back (see shared/adapters/memory.py)

# Routes check Entra bearer tokens themselves (functions/http_support.api): no function keys.
app = func.FunctionApp(http_auth_level=func.AuthLevel.ANONYMOUS)
app.register_functions(http_api.bp)
app.register_functions(config_api.bp)
app.register_functions(automation_api.bp)
app.register_functions(access_api.bp)
app.register_functions(exports_api.bp)
app.register_functions(notifications_api.bp)
app.register_functions(openapi_api.bp)
app.register_functions(web_app.bp)
app.register_functions(worker.bp)
app.register_functions(timers.bp)
