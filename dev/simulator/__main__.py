"""`python -m dev.simulator`: generate the platform's telemetry, send it to Kafka (or a JSONL file) at a
target rate, and write the ground truth. `--help` lists every option; truth.py documents the truth file.
"""

from __future__ import annotations

import argparse
import signal
import sys
import time
from datetime import datetime, timezone

from schemas.types import format_ts, parse_ts, ts_to_millis
from telemetry import settings
from dev.simulator import faults
from dev.simulator.config import ConfigError, SimConfig
from dev.simulator.producer import JsonlSink, KafkaSink, SinkError, generate_here, generate_in_worker, run
from dev.simulator.stream import SIMULATED_TOPICS
from dev.simulator.truth import dumps

DESCRIPTION = ("Generate a multi-tenant AI platform's telemetry (task lifecycles, LLM requests, credits, audit) "
               "with duplicates, out-of-order and malformed records; send it to Kafka or a JSONL file at a target "
               "rate; write the ground truth.")
EPILOG = """\
Event time starts at --start and advances with the record index at --rate (record i has event time about
start + i / rate), so producing at the rate keeps event time close to wall time. The same --seed and --start
(and options) give byte-identical records and truth, however fast they are sent.

Output: Kafka at KAFKA_DIRECT_URL (or --bootstrap) unless --out is given. Kafka record timestamps are the events'
ts. Keys: task_id on xumi_task, xumi_load, wkf_task and the credit topics (the first three have equal partition
counts, so a task's lifecycle records share a partition number); user_id on LLM requests and PBAC checks;
asset_id on asset records; policy id / engine name on pbac_politics / pbac_service.
The truth file (--truth) holds produced / valid / duplicate / malformed-by-reason counts per topic, and expected
sums per 10 s event-time window x tenant / department / project / user / model / model version / checkpoint,
per user and per project; see dev/simulator/truth.py for its exact shape.

exit status: 0 all records delivered; 1 Kafka unreachable, topics missing, or delivery errors (counted by error
code); 2 bad options"""


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m dev.simulator", description=DESCRIPTION,
                                epilog=EPILOG, formatter_class=argparse.RawDescriptionHelpFormatter)
    d = SimConfig()
    run_g = p.add_argument_group("run")
    run_g.add_argument("--seed", type=int, default=d.seed, help=f"random seed (default {d.seed})")
    run_g.add_argument("--start", default="now",
                       help="event time of the first record: ISO-8601 with Z or offset, or epoch ms "
                            "(default: now, floored to the minute; printed so a run can be repeated)")
    run_g.add_argument("--rate", type=float, default=d.rate,
                       help=f"records per second, of event time and of sending (default {d.rate:,.0f})")
    size = run_g.add_mutually_exclusive_group()
    size.add_argument("--events", type=int, help=f"records to produce, exactly (default {d.events:,})")
    size.add_argument("--duration", type=float, help="seconds of records at --rate (events = duration x rate)")
    run_g.add_argument("--max-speed", action="store_true",
                       help="send as fast as possible instead of at --rate (event times are unchanged)")
    run_g.add_argument("--progress-every", type=float, default=5.0, metavar="S",
                       help="seconds between progress lines on stderr (default 5)")
    run_g.add_argument("--check-events", action="store_true",
                       help="also build every event with its pydantic model and require identical bytes (slow)")
    run_g.add_argument("--generator-process", action=argparse.BooleanOptionalAction, default=None,
                       help="generate in a child process while this one sends (default: on for Kafka, off for --out)")

    out_g = p.add_argument_group("output")
    out_g.add_argument("--out", metavar="FILE.jsonl", help="write records to this JSONL file instead of Kafka")
    out_g.add_argument("--bootstrap", help="Kafka bootstrap servers (default: KAFKA_DIRECT_URL, 127.0.0.1:9092)")
    out_g.add_argument("--truth", metavar="PATH", help="write the ground truth JSON here")

    world = p.add_argument_group("platform size")
    for name, flag in (("tenants", "--tenants"), ("departments", "--departments"), ("projects", "--projects"),
                       ("users", "--users"), ("base_models", "--base-models"),
                       ("checkpoints_per_model", "--checkpoints-per-model"), ("nodes", "--nodes")):
        world.add_argument(flag, type=int, default=getattr(d, name), help=f"(default {getattr(d, name)})")

    mix = p.add_argument_group("traffic")
    mix.add_argument("--share-llm", type=float, default=d.share_llm,
                     help=f"share of LLM request records (default {d.share_llm})")
    mix.add_argument("--share-tasks", type=float, default=d.share_tasks,
                     help=f"share of task lifecycle + credit records (default {d.share_tasks})")
    mix.add_argument("--share-audit", type=float, default=d.share_audit,
                     help=f"share of audit records (default {d.share_audit})")
    mix.add_argument("--max-attempts", type=int, default=d.max_attempts,
                     help=f"attempts per task (default {d.max_attempts})")
    mix.add_argument("--orphan-share", type=float, default=d.orphan_share,
                     help=f"attempts that never end (default {d.orphan_share})")
    mix.add_argument("--task-time-scale", type=float, default=None,
                     help="multiply task queue/load/init/inference times (default: min(1, run seconds / 300), so "
                          "lifecycles fit short runs; every lifecycle ends inside the run)")
    mix.add_argument("--credit-interval", type=int, default=d.credit_interval_s, metavar="S",
                     help=f"seconds of use per credit record, at most (default {d.credit_interval_s})")
    mix.add_argument("--workflow-only", type=float, default=d.workflow_only_share,
                     help="share of tasks only the Workflow service reports (TaskStarted and its end, no XUMI "
                          f"events) (default {d.workflow_only_share})")
    mix.add_argument("--credits-near-max", action="store_true",
                     help="credit records carry credits just under the contract's maximum of 1e12, with six "
                          "decimals, so totals reach about 1e14 (for tests of exact money)")

    faults_g = p.add_argument_group("delivery faults")
    faults_g.add_argument("--duplicates", type=float, default=d.duplicate_share,
                          help=f"share of valid events delivered twice, same bytes (default {d.duplicate_share})")
    faults_g.add_argument("--out-of-order", type=float, default=d.out_of_order_share,
                          help=f"share of records delivered late (default {d.out_of_order_share})")
    faults_g.add_argument("--max-out-of-order-ms", type=int, default=d.max_out_of_order_ms,
                          help=f"the most event time a record is delivered late by (default {d.max_out_of_order_ms})")
    faults_g.add_argument("--late-starts", type=float, default=d.late_start_share,
                          help="share of ended task attempts whose xumi.task.started is delivered after their end "
                               f"(default {d.late_start_share})")
    faults_g.add_argument("--late-start-delay-ms", type=int, default=d.late_start_delay_ms,
                          help="how far after its attempt's end such a start is delivered, in event time (up to 1 s "
                               f"more; default {d.late_start_delay_ms}: past the job's default out-of-orderness)")
    faults_g.add_argument("--malformed", type=float, default=d.malformed_share,
                          help=f"share of records replaced by malformed ones (default {d.malformed_share})")
    faults_g.add_argument("--malformed-kinds", default="",
                          help=f"comma-separated subset of: {', '.join(faults.KINDS)} (default: all)")
    return p


def start_ms(text: str) -> int:
    if text == "now":
        now = datetime.now(timezone.utc).replace(second=0, microsecond=0)  # the only wall-clock read
        return ts_to_millis(now)
    return ts_to_millis(parse_ts(int(text) if text.isdigit() else text))


def config_from_args(args: argparse.Namespace) -> SimConfig:
    kinds = tuple(k for k in args.malformed_kinds.split(",") if k)
    unknown = [k for k in kinds if k not in faults.KINDS]
    if unknown:
        raise ConfigError(f"--malformed-kinds: unknown {unknown}; known: {', '.join(faults.KINDS)}")
    events = args.events if args.events is not None else (
        int(args.duration * args.rate) if args.duration is not None else SimConfig().events)
    return SimConfig(
        seed=args.seed, start_ms=start_ms(args.start), rate=args.rate, events=events, tenants=args.tenants,
        departments=args.departments, projects=args.projects, users=args.users, base_models=args.base_models,
        checkpoints_per_model=args.checkpoints_per_model, nodes=args.nodes, share_llm=args.share_llm,
        share_tasks=args.share_tasks, share_audit=args.share_audit, max_attempts=args.max_attempts,
        orphan_share=args.orphan_share, task_time_scale=args.task_time_scale, credit_interval_s=args.credit_interval,
        workflow_only_share=args.workflow_only, credits_near_max=args.credits_near_max,
        duplicate_share=args.duplicates, out_of_order_share=args.out_of_order,
        max_out_of_order_ms=args.max_out_of_order_ms, late_start_share=args.late_starts,
        late_start_delay_ms=args.late_start_delay_ms, malformed_share=args.malformed, malformed_kinds=kinds,
    )


def _exit_on_sigterm(signum: int, frame: object) -> None:
    # A normal exit, so multiprocessing stops the generator process too (the default SIGTERM action left it
    # running, blocked on its pipe, after a demo or benchmark stopped its traffic).
    raise SystemExit(128 + signum)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        cfg = config_from_args(args)
        bootstrap = args.bootstrap or settings.load().kafka_direct_url
    except (ConfigError, settings.SettingsError, ValueError) as exc:
        print(f"simulator: {exc}", file=sys.stderr)
        return 2
    target = f"file {args.out}" if args.out else f"Kafka {bootstrap}"
    print(f"[simulator] seed {cfg.seed}, start {format_ts(parse_ts(cfg.start_ms))} ({cfg.start_ms}), "
          f"{cfg.events:,} records at {cfg.rate:,.0f}/s of event time -> {target}; "
          f"task time scale {cfg.time_scale:.3g}", file=sys.stderr, flush=True)
    in_worker = args.generator_process if args.generator_process is not None else not args.out
    gen = generate_in_worker if in_worker else generate_here
    batches, truth = gen(cfg, args.check_events)  # before the Kafka client: fork and librdkafka's threads
    if args.out:
        sink: JsonlSink | KafkaSink = JsonlSink(args.out)
    else:
        sink = KafkaSink(bootstrap)
        try:
            sink.preflight(SIMULATED_TOPICS)
        except SinkError as exc:
            print(f"simulator: {exc}", file=sys.stderr)
            return 1
    started = time.monotonic()
    stats = run(batches, sink, None if args.max_speed else cfg.rate, cfg.events, args.progress_every)
    data = truth()
    if args.truth:
        with open(args.truth, "w", encoding="utf-8") as f:
            f.write(dumps(data))
    errors = sum(stats.errors.values())
    print(f"[simulator] done: {stats.sent:,} records in {stats.elapsed_s:.1f} s ({stats.rate:,.0f}/s sending; "
          f"{time.monotonic() - started:.1f} s with the final flush), delivery errors {errors:,}"
          + (f" {stats.errors}" if errors else ""), file=sys.stderr)
    topics = data["topics"]
    print(f"[simulator] valid {sum(t['valid'] for t in topics.values()):,}, duplicates "
          f"{sum(t['duplicates'] for t in topics.values()):,}, malformed {sum(data['dlq'].values()):,} "
          f"{data['dlq']}; tasks {data['tasks']['tasks']:,} (attempts {data['tasks']['attempts']:,}, orphaned "
          f"{data['tasks']['orphaned']:,})" + (f"; truth -> {args.truth}" if args.truth else ""), file=sys.stderr)
    return 1 if errors else 0


if __name__ == "__main__":
    sys.exit(main())
