"""What the operator observes: Celery-correct backlog, worker load, pod CPU, each with its age.

One module per source, each behind a narrow interface (like KEDA's scalers):

- `reader.BacklogReader.read(list[PoolQuery]) -> dict[pool_id, PoolSignals]`: queues and
  worker load from Redis, one pipelined round trip per server per call.
- `rabbitmq.RabbitMQReader(workers=...).read(list[PoolQuery])`: the same for amqp://
  brokers, one management-API queue list per broker (and vhost) per call.
- `heartbeats.HeartbeatListener`: worker load from Celery's worker events over either
  broker (stock heartbeats, and the library's load report), the RabbitMQ reader's workers.
- `wakeup.WakeupListener(callback, min_interval_s).update(queries)`: calls back with pool
  ids within a second of new work (keyspace notifications; on RabbitMQ a once-a-second
  poll in `rabbitmq_wakeup`), capped per pool.
- `pod_metrics.PodMetricsReader(custom_api).read(namespace, selector)`: pod CPU from
  metrics.k8s.io, or an error string when the cluster does not serve it.

kombu's Redis key conventions live only in `kombu_keys`; Celery's message format only in
`celery_message`; URL schemes (redis, rediss, sentinel) only in `connection`; RabbitMQ's
URLs, vhosts and management API only in `rabbitmq_api` (its HTTP edge in `rabbitmq_client`).
"""
