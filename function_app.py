"""The one FunctionApp. It only registers Blueprints; the work lives in `functions/` and `shared/`."""

import azure.functions as func

from functions import automation_api, config_api, http_api, timers, worker
from shared.telemetry import configure_logging

configure_logging()  # structured lines, secrets redacted; Application Insights when its setting is present

app = func.FunctionApp(http_auth_level=func.AuthLevel.FUNCTION)
app.register_functions(http_api.bp)
app.register_functions(config_api.bp)
app.register_functions(automation_api.bp)
app.register_functions(worker.bp)
app.register_functions(timers.bp)
