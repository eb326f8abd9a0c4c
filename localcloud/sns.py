"""SNS e-mail, locally: moto delivers to Lambda, SQS and HTTP subscriptions, not to inboxes.

`SEAM.install(cloud)` takes over `Subscription.publish` for `email` and `email-json` subscriptions:
the message is kept in ``cloud.notifications`` and printed on the console (``cloud.say``); every
other protocol is moto's.
"""
from __future__ import annotations

import time
from typing import Any

from .patches import Seam


def _patch(seam: Seam) -> None:
    from moto.sns.models import Subscription

    def publish(self, message: str, message_id: str, subject: str | None = None, *args: Any, **kwargs: Any) -> None:
        cloud = seam.current
        if cloud is not None and self.protocol in ("email", "email-json"):
            note = {"to": self.endpoint, "subject": subject, "message": message, "topic": self.topic.arn,
                    "at": time.time()}
            cloud.notifications.append(note)
            cloud.say(f"[sns] email to {self.endpoint}: {subject or '(no subject)'}\n{message}")
            return None
        return seam["publish"](self, message, message_id, subject, *args, **kwargs)

    seam.replace(Subscription, "publish", publish)


SEAM = Seam(_patch)
