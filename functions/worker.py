"""Queue Blueprint: the generation worker and its poison-queue handler (`shared.app.generation`), the billing
exports job with its own (`shared.app.exports`; queue `{GENERATION_QUEUE}-exports`, so no new setting), and the
webhook deliveries with theirs (`shared.app.webhooks`)."""

from __future__ import annotations

import azure.functions as func

from shared.app.context import get_context
from shared.app import webhooks
from shared.app.exports import ExportJob
from shared.app.generation import Worker

bp = func.Blueprint()

QUEUE = "%GENERATION_QUEUE%"
POISON_QUEUE = "%GENERATION_QUEUE%-poison"


@bp.queue_trigger(arg_name="msg", queue_name=QUEUE, connection="AzureWebJobsStorage")
def generate_file(msg: func.QueueMessage) -> None:
    Worker(get_context()).handle(msg.get_body().decode("utf-8"), msg.dequeue_count or 1)


@bp.queue_trigger(arg_name="msg", queue_name=POISON_QUEUE, connection="AzureWebJobsStorage")
def generation_gave_up(msg: func.QueueMessage) -> None:
    Worker(get_context()).handle_poison(msg.get_body().decode("utf-8"))


EXPORT_QUEUE = "%GENERATION_QUEUE%-exports"


@bp.queue_trigger(arg_name="msg", queue_name=EXPORT_QUEUE, connection="AzureWebJobsStorage")
def make_export(msg: func.QueueMessage) -> None:
    ExportJob(get_context()).handle(msg.get_body().decode("utf-8"), msg.dequeue_count or 1)


@bp.queue_trigger(arg_name="msg", queue_name=EXPORT_QUEUE + "-poison", connection="AzureWebJobsStorage")
def export_gave_up(msg: func.QueueMessage) -> None:
    ExportJob(get_context()).handle_poison(msg.get_body().decode("utf-8"))


@bp.queue_trigger(arg_name="msg", queue_name="%WEBHOOK_QUEUE%", connection="AzureWebJobsStorage")
def deliver_webhook(msg: func.QueueMessage) -> None:
    webhooks.deliver(get_context(), msg.get_body().decode("utf-8"))


@bp.queue_trigger(arg_name="msg", queue_name="%WEBHOOK_QUEUE%-poison", connection="AzureWebJobsStorage")
def webhook_gave_up(msg: func.QueueMessage) -> None:
    webhooks.gave_up(get_context(), msg.get_body().decode("utf-8"))
