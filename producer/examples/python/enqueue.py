#!/usr/bin/env python3
"""Enqueue a ripen task from Python over AMQP, with pika (Debian: python3-pika).

    python3 enqueue.py --queue default --type email.send --payload '{"to": "a@b.c"}' --delay-ms 30000

Publishes one envelope (shared/envelope.schema.json) to the ingress exchange
(<namespace>.ingress) and waits for the dispatcher's reply. Prints the task id
and exits 0, or prints the reason it was refused and exits 1; a --payload that
is not JSON exits 2.

The message_id is what makes a redelivery safe: a dispatcher that dies after
storing the task but before acking the message gets it again, and recognises
it by this id. Reuse the same message_id when you retry a publish yourself.
"""
import argparse
import json
import os
import sys
import time
import uuid

import pika


def quote_short(text: str, limit: int = 40) -> str:
    """'text', cut to its first `limit` characters."""
    return "'" + (text if len(text) <= limit else text[:limit] + "...") + "'"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--queue", default="default")
    ap.add_argument("--type", required=True)
    ap.add_argument("--payload", default="null", help="JSON")
    ap.add_argument("--delay-ms", type=int, default=0)
    ap.add_argument("--idempotency-key", default="")
    ap.add_argument("--amqp-url", default=os.environ.get("RIPEN_AMQP_URL", "amqp://guest:guest@127.0.0.1:5672/%2f"))
    ap.add_argument("--namespace", default=os.environ.get("RIPEN_NAMESPACE", "ripen"))
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the reply")
    args = ap.parse_args()

    try:
        payload = json.loads(args.payload)
    except json.JSONDecodeError as e:
        # One line naming the problem, as for any other bad argument (exit 2),
        # not a traceback; the input quoted short, as it may be long.
        print("enqueue.py: --payload %s is not JSON: %s (column %d)" % (quote_short(args.payload), e.msg, e.colno),
              file=sys.stderr)
        return 2
    envelope = {"v": 1, "queue": args.queue, "type": args.type, "payload": payload}
    if args.delay_ms:
        envelope["delay_ms"] = args.delay_ms
    if args.idempotency_key:
        envelope["idempotency_key"] = args.idempotency_key

    connection = pika.BlockingConnection(pika.URLParameters(args.amqp_url))
    channel = connection.channel()
    # The reply comes by RabbitMQ's direct reply-to, to this channel only (the
    # dispatcher answers no other reply_to unless configured: docs/security.md).
    replies = []
    channel.basic_consume(
        "amq.rabbitmq.reply-to", lambda _ch, _method, props, body: replies.append((props, body)), auto_ack=True
    )
    channel.confirm_delivery()
    correlation_id = str(uuid.uuid4())
    try:
        channel.basic_publish(
            exchange=args.namespace + ".ingress",
            routing_key="",
            body=json.dumps(envelope).encode(),
            properties=pika.BasicProperties(
                content_type="application/json",
                delivery_mode=2,  # persistent
                message_id=str(uuid.uuid4()),
                correlation_id=correlation_id,
                reply_to="amq.rabbitmq.reply-to",
            ),
            mandatory=True,
        )
    except pika.exceptions.UnroutableError:
        print("enqueue.py: no ingress queue is bound yet: start a ripen dispatcher first", file=sys.stderr)
        return 1
    except pika.exceptions.ChannelClosedByBroker as e:
        print("enqueue.py: %s (has a ripen dispatcher run in this namespace?)" % e.reply_text, file=sys.stderr)
        return 1

    deadline = time.monotonic() + args.timeout
    while time.monotonic() < deadline and not replies:
        connection.process_data_events(time_limit=0.05)
    for props, body in replies:
        if props.correlation_id != correlation_id:
            continue
        reply = json.loads(body)
        connection.close()
        if reply.get("ok"):
            print(reply["id"])
            return 0
        print("enqueue.py: refused: " + reply.get("error", "?"), file=sys.stderr)
        return 1
    print("enqueue.py: no reply within %.0f s (is a dispatcher running?)" % args.timeout, file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
