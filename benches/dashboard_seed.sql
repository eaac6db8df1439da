-- What `bursar bench dashboards` adds besides billing, for the panels that read other
-- tables: a year of placement decisions (2,000,000: about four a minute), six budgets
-- evaluated every 15 minutes with their alerts and outbox rows, 400 GPU machines with a
-- year of idle-GPU actions (30,000) and three days of 5-minute GPU samples (8 GPUs each:
-- 2,764,800), and open idle cases. {now} is replaced by the benchmark's end (UTC).
-- Postgres only; deterministic (no random()).

INSERT INTO placement_decision (id, decided_at, team, project, job_id, labels, request,
    offers_considered, feasible, chosen_provider, chosen_region, chosen_zone,
    chosen_instance_type, chosen_market, chosen_total, runner_up_provider, runner_up_region,
    runner_up_instance_type, runner_up_market, runner_up_total, baseline_total,
    estimated_saving, currency, outcome, latency_us)
SELECT 'bench-' || g,
       TIMESTAMPTZ '{now}' - (g * 15.768) * INTERVAL '1 second',
       'team-' || (g % 4), 'project-' || (g % 20), 'job-' || g,
       jsonb_build_object('team', 'team-' || (g % 4), 'env', CASE WHEN g % 3 = 0 THEN 'prod' ELSE 'dev' END),
       jsonb_build_object('gpus', 1 + g % 8, 'hours', 1 + g % 12),
       400 + g % 300, 20 + g % 50,
       CASE WHEN g % 10 = 9 THEN NULL ELSE (ARRAY['aws', 'gcp', 'azure'])[1 + g % 3] END,
       CASE WHEN g % 10 = 9 THEN NULL ELSE (ARRAY['us-east-1', 'us-central1', 'eastus', 'eu-west-1'])[1 + g % 4] END,
       NULL,
       CASE WHEN g % 10 = 9 THEN NULL ELSE (ARRAY['p4d.24xlarge', 'a2-highgpu-8g', 'Standard_ND96asr_v4'])[1 + g % 3] END,
       CASE WHEN g % 10 = 9 THEN NULL WHEN g % 4 = 0 THEN 'spot' ELSE 'on_demand' END,
       CASE WHEN g % 10 = 9 THEN NULL ELSE round((10 + g % 90)::numeric * 1.37, 4) END,
       'aws', 'us-west-2', 'p4d.24xlarge', 'on_demand', round((12 + g % 90)::numeric * 1.37, 4),
       CASE WHEN g % 10 = 9 THEN NULL ELSE round((15 + g % 90)::numeric * 1.37, 4) END,
       CASE WHEN g % 10 = 9 THEN NULL ELSE round(5 * 1.37, 4) END,
       'USD',
       CASE WHEN g % 10 = 9 THEN 'no_feasible_offer' ELSE 'placed' END,
       80 + g % 400
FROM generate_series(1, 2000000) g;

INSERT INTO budget (name, spec, origin, created_at, updated_at)
SELECT 'bench-' || b,
       json_build_object('name', 'bench-' || b, 'amount', (b * 20000)::text, 'currency',
           CASE WHEN b = 6 THEN 'GB' ELSE 'USD' END, 'period', 'monthly')::text,
       'config', TIMESTAMPTZ '{now}' - INTERVAL '400 days', TIMESTAMPTZ '{now}' - INTERVAL '400 days'
FROM generate_series(1, 6) b;

INSERT INTO budget_evaluation (budget, evaluated_at, period_key, period_start, period_end,
    amount, currency, actual, forecast)
SELECT 'bench-' || b, t, to_char(t AT TIME ZONE 'UTC', 'YYYY-MM'),
       date_trunc('month', t, 'UTC'), date_trunc('month', t, 'UTC') + INTERVAL '1 month',
       b * 20000, CASE WHEN b = 6 THEN 'GB' ELSE 'USD' END,
       round((b * 700 * EXTRACT(EPOCH FROM (t - date_trunc('month', t, 'UTC'))) / 86400)::numeric, 2),
       round((b * 700 * 30)::numeric, 2)
FROM generate_series(1, 6) b,
     generate_series(TIMESTAMPTZ '{now}' - INTERVAL '365 days', TIMESTAMPTZ '{now}', INTERVAL '15 minutes') t;

INSERT INTO budget_alert (budget, period_key, threshold_key, fired_at, actual, forecast, amount, currency)
SELECT 'bench-' || b, to_char(m AT TIME ZONE 'UTC', 'YYYY-MM'), 'actual:' || p, m + (p / 10) * INTERVAL '1 day',
       b * 200 * p, b * 700 * 30, b * 20000, CASE WHEN b = 6 THEN 'GB' ELSE 'USD' END
FROM generate_series(1, 6) b,
     generate_series(date_trunc('month', TIMESTAMPTZ '{now}' - INTERVAL '365 days', 'UTC'), TIMESTAMPTZ '{now}', INTERVAL '1 month') m,
     unnest(ARRAY[50, 80, 100]) p;

INSERT INTO alert_outbox (budget, period_key, threshold_key, channel, target, subject, body_text,
    body_html, slack_payload, state, attempts, next_attempt_at, created_at, delivered_at)
SELECT a.budget, a.period_key, a.threshold_key, c, 'finance@example.com', 'Budget ' || a.budget,
       'text', '<p>html</p>', '{}',
       CASE WHEN a.fired_at < TIMESTAMPTZ '{now}' - INTERVAL '1 day' THEN 'delivered' ELSE 'pending' END,
       CASE WHEN a.threshold_key = 'actual:100' THEN 2 ELSE 1 END,
       a.fired_at, a.fired_at,
       CASE WHEN a.fired_at < TIMESTAMPTZ '{now}' - INTERVAL '1 day' THEN a.fired_at END
FROM budget_alert a, unnest(ARRAY['email', 'slack']) c
WHERE a.budget LIKE 'bench-%';

INSERT INTO fleet_instance (provider, id, name, scope, resource, region, zone, instance_type,
    gpu_model, gpu_count, state, launched_at, private_hostname, labels, managed_by,
    cloud_protection, price_per_hour, currency, first_seen, last_seen)
SELECT (ARRAY['aws', 'gcp', 'azure'])[1 + i % 3], 'bench-i-' || i, 'gpu-' || i, 'scope', 'res-' || i,
       (ARRAY['us-east-1', 'us-central1', 'eastus', 'eu-west-1'])[1 + i % 4], 'zone-a',
       'p4d.24xlarge', 'A100', 8, CASE WHEN i % 5 = 0 THEN 'stopped' ELSE 'running' END,
       TIMESTAMPTZ '{now}' - INTERVAL '30 days', 'host-' || i,
       json_build_object('team', 'team-' || (i % 4))::text, '', '', 32.77, 'USD',
       TIMESTAMPTZ '{now}' - INTERVAL '365 days', TIMESTAMPTZ '{now}'
FROM generate_series(1, 400) i;

INSERT INTO fleet_action (at, provider, instance_id, instance_name, decision, mode, reason, evidence,
    price_per_hour, currency, error, stopped_until, restarted_at)
SELECT TIMESTAMPTZ '{now}' - (g * 1051.2) * INTERVAL '1 second',
       (ARRAY['aws', 'gcp', 'azure'])[1 + (g % 400 + 1) % 3], 'bench-i-' || (g % 400 + 1), 'gpu-' || (g % 400 + 1),
       (ARRAY['would_notify', 'notified', 'would_stop', 'stopped', 'cancelled', 'failed', 'kept', 'terminated'])[1 + g % 8],
       CASE WHEN g % 2 = 0 THEN 'enforce' ELSE 'dry_run' END, 'idle', '{}', 32.77, 'USD',
       CASE WHEN g % 8 = 5 THEN 'throttled' ELSE '' END,
       CASE WHEN g % 8 IN (3, 7) THEN TIMESTAMPTZ '{now}' - (g * 1051.2) * INTERVAL '1 second' + INTERVAL '6 hours' END,
       NULL
FROM generate_series(1, 30000) g;

INSERT INTO gpu_sample (instance_id, gpu, at, utilization, memory_mib, power_watts, source)
SELECT 'bench-i-' || i, 'GPU-' || k,
       (EXTRACT(EPOCH FROM TIMESTAMPTZ '{now}')::bigint - s * 300) * 1000,
       CASE WHEN i % 7 = 0 THEN 1.5 ELSE 40 + (s + k) % 60 END, 20000, 250, 'dcgm'
FROM generate_series(1, 400) i, generate_series(0, 7) k, generate_series(0, 863) s;

INSERT INTO fleet_case (provider, instance_id, opened_at, detail)
SELECT i.provider, i.id, TIMESTAMPTZ '{now}' - INTERVAL '2 hours',
       json_build_object('stage', 'notified', 'due_at', '{now}')::text
FROM fleet_instance i WHERE i.id LIKE 'bench-i-%' AND i.state = 'running' AND i.id ~ '[27]$';
